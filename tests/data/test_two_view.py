"""The shared two-view data path: AMDIM's augmentation (shared flip, per-view crop / jitter / grayscale) without
torchvision, its injectable randomness, and the collator that stacks both views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hf_unified_pretrain.data import TwoViewCollator, TwoViewTransform
from hf_unified_pretrain.data.randomness import SeededRandomness
from hf_unified_pretrain.data.two_view import adjust_hue, color_jitter, translate_with_reflection

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _image(height=40, width=56, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _to_uint8(tensor: torch.Tensor) -> np.ndarray:
    return np.rint((tensor.permute(1, 2, 0).numpy() * STD[0] + MEAN[0]) * 255).astype(np.int64)


def test_two_views_have_the_size_and_differ():
    transform = TwoViewTransform(image_size=(24, 32), image_mean=MEAN, image_std=STD, seed=0)
    output = transform(_image())
    assert set(output) == {"pixel_values", "pixel_values_2"}
    assert output["pixel_values"].shape == output["pixel_values_2"].shape == (3, 24, 32)
    assert not torch.equal(output["pixel_values"], output["pixel_values_2"])


def test_seeded_transform_is_reproducible_and_seeds_matter():
    image = _image()
    first = TwoViewTransform(image_size=16, seed=3)(image)
    again = TwoViewTransform(image_size=16, seed=3)(image)
    other = TwoViewTransform(image_size=16, seed=4)(image)
    assert torch.equal(first["pixel_values"], again["pixel_values"])
    assert torch.equal(first["pixel_values_2"], again["pixel_values_2"])
    assert not torch.equal(first["pixel_values"], other["pixel_values"])


def test_without_augmentation_both_views_are_the_normalised_image():
    image = _image(32, 32)
    transform = TwoViewTransform(
        image_size=32, image_mean=MEAN, image_std=STD, crop="translate", translate_probability=0.0,
        flip_probability=0.0, color_jitter_probability=0.0, grayscale_probability=0.0, seed=0,
    )  # fmt: skip
    output = transform(image)
    np.testing.assert_array_equal(_to_uint8(output["pixel_values"]), np.asarray(image))
    np.testing.assert_array_equal(_to_uint8(output["pixel_values_2"]), np.asarray(image))


def test_the_flip_is_shared_by_both_views():
    image = _image(32, 32)
    transform = TwoViewTransform(
        image_size=32, image_mean=MEAN, image_std=STD, crop="translate", translate_probability=0.0,
        flip_probability=1.0, color_jitter_probability=0.0, grayscale_probability=0.0,
    )  # fmt: skip
    output = transform(image)
    flipped = np.asarray(image)[:, ::-1]
    np.testing.assert_array_equal(_to_uint8(output["pixel_values"]), flipped)
    np.testing.assert_array_equal(_to_uint8(output["pixel_values_2"]), flipped)


def test_grayscale_with_probability_one_gives_equal_channels():
    transform = TwoViewTransform(image_size=16, grayscale_probability=1.0, color_jitter_probability=0.0, seed=1)
    output = transform(_image())
    for key in ("pixel_values", "pixel_values_2"):
        unnormalised = output[key] * torch.tensor(transform.image_std)[:, None, None]
        unnormalised = unnormalised + torch.tensor(transform.image_mean)[:, None, None]
        torch.testing.assert_close(unnormalised[0], unnormalised[1], atol=1e-5, rtol=0)
        torch.testing.assert_close(unnormalised[1], unnormalised[2], atol=1e-5, rtol=0)


def test_translation_moves_content_and_reflects_the_border():
    array = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    moved = np.asarray(translate_with_reflection(Image.fromarray(array), dx=2, dy=-1))
    # content moved right by 2 and up by 1
    np.testing.assert_array_equal(moved[0:4, 2:6], array[1:5, 0:4])
    # the uncovered left columns mirror the content without repeating the edge: column 1 <- 1, column 0 <- 2
    np.testing.assert_array_equal(moved[0:4, 1], array[1:5, 1])
    np.testing.assert_array_equal(moved[0:4, 0], array[1:5, 2])
    # the uncovered bottom row mirrors row 3 of the source (reflection about the last row)
    np.testing.assert_array_equal(moved[4, 2:6], array[3, 0:4])


def test_hue_shift_by_half_a_turn_swaps_complementary_colours():
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    shifted = np.asarray(adjust_hue(red, 0.5))
    assert shifted[0, 0, 0] < 10 and shifted[0, 0, 1] > 240 and shifted[0, 0, 2] > 240  # cyan
    np.testing.assert_array_equal(np.asarray(adjust_hue(red, 0.0)), np.asarray(red))
    with pytest.raises(ValueError, match="hue_factor"):
        adjust_hue(red, 0.7)


def test_color_jitter_changes_colours_but_not_a_disabled_one():
    image = _image(8, 8)
    rng = SeededRandomness(0)
    jittered = np.asarray(color_jitter(image, 0.4, 0.4, 0.4, 0.1, rng))
    assert jittered.shape == (8, 8, 3) and not np.array_equal(jittered, np.asarray(image))
    unchanged = np.asarray(color_jitter(image, 0.0, 0.0, 0.0, 0.0, rng))
    np.testing.assert_array_equal(unchanged, np.asarray(image))


def test_amdim_recipes_and_bad_arguments():
    cifar = TwoViewTransform.amdim_recipe(32)
    assert cifar.crop == "translate" and cifar.color_jitter == (0.4, 0.4, 0.4, 0.2)
    assert TwoViewTransform.amdim_recipe(128).scale == (0.3, 1.0)
    assert TwoViewTransform.amdim_recipe(128).ratio == (0.7, 1.4)
    with pytest.raises(ValueError, match="32, 64 and 128"):
        TwoViewTransform.amdim_recipe(96)
    with pytest.raises(ValueError, match="crop must be one of"):
        TwoViewTransform(crop="center")
    with pytest.raises(ValueError, match="grayscale_probability"):
        TwoViewTransform(grayscale_probability=1.5)
    with pytest.raises(ValueError, match="color_jitter"):
        TwoViewTransform(color_jitter=(0.4, 0.4, 0.4, 0.7))


def test_collator_stacks_both_views_and_labels_and_drops_unreadable():
    transform = TwoViewTransform(image_size=16, seed=0)
    examples = [{**transform(_image(seed=i)), "label": i} for i in range(3)]
    examples.append({"pixel_values": None, "pixel_values_2": None, "label": 9})
    batch = TwoViewCollator(label_column="label")(examples)
    assert batch["pixel_values"].shape == batch["pixel_values_2"].shape == (3, 3, 16, 16)
    assert batch["labels"].tolist() == [0, 1, 2]
    torch.testing.assert_close(batch["pixel_values_2"][1], examples[1]["pixel_values_2"])
    with pytest.raises(ValueError, match="pixel_values_2"):
        TwoViewCollator()([{"pixel_values": torch.zeros(3, 4, 4)}])
