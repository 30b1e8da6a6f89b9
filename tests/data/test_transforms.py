"""Transforms without torchvision: shapes, normalisation values, crop sampling, seeded flips, teacher inputs."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ViTImageProcessor

from hf_unified_pretrain.data import (
    EvalTransform,
    PretrainingTransform,
    SeededRandomness,
    image_size_from_processor,
    sample_resized_crop_box,
)

from .helpers import gradient_image

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TEACHER_MEAN, TEACHER_STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def denormalize(pixel_values: torch.Tensor, mean, std) -> torch.Tensor:
    return pixel_values * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]


@pytest.mark.parametrize("transform_class", [PretrainingTransform, EvalTransform])
def test_output_shape_dtype_and_non_square_sizes(transform_class):
    image = gradient_image(50, 80, seed=0)
    assert transform_class(32)(image)["pixel_values"].shape == (3, 32, 32)
    output = transform_class((24, 40))(image)
    assert set(output) == {"pixel_values"}
    assert output["pixel_values"].shape == (3, 24, 40)
    assert output["pixel_values"].dtype == torch.float32


@pytest.mark.parametrize("transform_class", [PretrainingTransform, EvalTransform])
def test_constant_image_is_normalised_exactly(transform_class):
    color = (200, 100, 50)
    image = Image.new("RGB", (61, 45), color)
    pixel_values = transform_class(16, MEAN, STD)(image)["pixel_values"]
    expected = (torch.tensor(color) / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(pixel_values.mean(dim=(1, 2)), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(pixel_values.std(dim=(1, 2)), torch.zeros(3), atol=1e-5, rtol=0)


def test_grey_and_rgba_inputs_become_three_channels():
    transform = PretrainingTransform(8, seed=0)
    assert transform(Image.new("L", (20, 20), 7))["pixel_values"].shape == (3, 8, 8)
    assert transform(Image.new("RGBA", (20, 20), (1, 2, 3, 4)))["pixel_values"].shape == (3, 8, 8)
    assert transform(np.zeros((20, 20, 3), dtype=np.uint8))["pixel_values"].shape == (3, 8, 8)


def test_sampled_crops_respect_scale_ratio_and_bounds():
    rng = SeededRandomness(0)
    for _ in range(200):
        top, left, height, width = sample_resized_crop_box(120, 90, (0.2, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= top <= 120 - height and 0 <= left <= 90 - width
        # rounding the sides to whole pixels moves area and aspect slightly beyond the sampled ranges
        assert 0.2 * 0.95 <= height * width / (120 * 90) <= 1.0
        assert 3 / 4 * 0.95 <= width / height <= 4 / 3 * 1.05


def test_crop_falls_back_to_centre_crop_with_clamped_aspect():
    # A 10-pixel-high strip: no crop of area >= 50 % fits at aspect <= 4/3, so the fallback is used.
    top, left, height, width = sample_resized_crop_box(10, 1000, (0.5, 1.0), (3 / 4, 4 / 3), SeededRandomness(0))
    assert (height, width) == (10, 13)
    assert (top, left) == (0, (1000 - 13) // 2)


def test_seeded_crops_and_flips_are_reproducible_and_flips_mirror():
    image = gradient_image(30, 40, seed=1)
    # scale (1, 1) with the image's own aspect makes the crop the whole image, so only the flip varies
    kwargs = {"image_size": (30, 40), "scale": (1.0, 1.0), "ratio": (4 / 3, 4 / 3), "interpolation": "nearest"}
    base = EvalTransform((30, 40), crop_pct=1.0, interpolation="nearest")(image)["pixel_values"]
    flipped = base.flip(-1)

    transform_a, transform_b = PretrainingTransform(**kwargs, seed=7), PretrainingTransform(**kwargs, seed=7)
    outputs_a = [transform_a(image)["pixel_values"] for _ in range(16)]
    outputs_b = [transform_b(image)["pixel_values"] for _ in range(16)]
    assert all(torch.equal(a, b) for a, b in zip(outputs_a, outputs_b, strict=True))

    flips = []
    for output in outputs_a:
        assert torch.equal(output, base) or torch.equal(output, flipped)
        flips.append(torch.equal(output, flipped))
    assert 0 < sum(flips) < len(flips)  # both outcomes occur

    other = PretrainingTransform(**kwargs, seed=8)
    assert flips != [torch.equal(other(image)["pixel_values"], flipped) for _ in range(16)]
    no_flip = PretrainingTransform(**kwargs, hflip=False, seed=7)
    assert all(torch.equal(no_flip(image)["pixel_values"], base) for _ in range(8))


def test_seeded_transform_survives_pickling_with_its_state():
    image = gradient_image(40, 40, seed=2)
    transform = PretrainingTransform(16, seed=3)
    transform(image)
    copy = pickle.loads(pickle.dumps(transform))
    torch.testing.assert_close(copy(image)["pixel_values"], transform(image)["pixel_values"], atol=0, rtol=0)


def test_teacher_pixel_values_share_the_crop_and_flip():
    image = gradient_image(64, 64, seed=4)
    same_size = PretrainingTransform(
        24, MEAN, STD, teacher_image_mean=TEACHER_MEAN, teacher_image_std=TEACHER_STD, seed=0
    )
    for _ in range(6):
        output = same_size(image)
        assert set(output) == {"pixel_values", "teacher_pixel_values"}
        torch.testing.assert_close(
            denormalize(output["teacher_pixel_values"], TEACHER_MEAN, TEACHER_STD),
            denormalize(output["pixel_values"], MEAN, STD),
            atol=1e-5,
            rtol=0,
        )

    resized = PretrainingTransform(
        24, MEAN, STD, teacher_image_size=14, teacher_image_mean=TEACHER_MEAN, teacher_image_std=TEACHER_STD, seed=0
    )
    output = resized(image)
    assert output["teacher_pixel_values"].shape == (3, 14, 14)
    # Same region: the average colour agrees up to resampling differences.
    torch.testing.assert_close(
        denormalize(output["teacher_pixel_values"], TEACHER_MEAN, TEACHER_STD).mean(dim=(1, 2)),
        denormalize(output["pixel_values"], MEAN, STD).mean(dim=(1, 2)),
        atol=0.02,
        rtol=0,
    )

    evaluation = EvalTransform(
        24, teacher_image_size=(20, 28), teacher_image_mean=TEACHER_MEAN, teacher_image_std=TEACHER_STD
    )(image)
    assert evaluation["teacher_pixel_values"].shape == (3, 20, 28)


def test_eval_transform_center_crop_region_and_identity():
    transform = EvalTransform(32, crop_pct=0.875)
    left, top, right, bottom = transform.center_crop_box(100, 200)
    # the shorter side is resized to 32 / 0.875 ~ 36.6, of which the central 32 are kept: 87.5 source pixels
    assert math.isclose(bottom - top, 87.5) and math.isclose(right - left, 87.5)
    assert math.isclose((left + right) / 2, 100) and math.isclose((top + bottom) / 2, 50)

    image = gradient_image(16, 16, seed=5)
    identity = EvalTransform(16, MEAN, STD, crop_pct=1.0, interpolation="nearest")(image)["pixel_values"]
    expected = (torch.from_numpy(np.array(image)).permute(2, 0, 1) / 255 - torch.tensor(MEAN)[:, None, None]) / (
        torch.tensor(STD)[:, None, None]
    )
    torch.testing.assert_close(identity, expected, atol=1e-6, rtol=0)


def test_from_image_processor_reads_size_mean_and_std():
    processor = ViTImageProcessor(size={"height": 48, "width": 40}, image_mean=MEAN, image_std=STD)
    assert image_size_from_processor(processor) == (48, 40)
    transform = PretrainingTransform.from_image_processor(processor, seed=0)
    assert transform.image_size == (48, 40) and transform.image_mean == MEAN
    output = EvalTransform.from_image_processor(processor)(gradient_image(60, 60, 0))
    assert output["pixel_values"].shape == (3, 48, 40)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": (0.5, 0.2)}, "scale must be"),
        ({"ratio": (0.0, 1.0)}, "ratio must be"),
        ({"interpolation": "cubic"}, "interpolation must be one of"),
        ({"image_mean": (0.5, 0.5)}, "3 values"),
        ({"image_std": (0.5, 0.0, 0.5)}, "positive"),
        ({"teacher_image_size": 14}, "teacher_image_mean"),
        ({"teacher_image_mean": TEACHER_MEAN}, "both teacher_image_mean and teacher_image_std"),
        ({"image_size": (0, 3)}, "positive"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PretrainingTransform(**{"image_size": 16, **kwargs})
