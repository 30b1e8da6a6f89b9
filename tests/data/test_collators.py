"""MaskedImageCollator: keys, shapes, exact mask counts, dropped unreadable examples, seeding, pickling."""

from __future__ import annotations

import pickle

import pytest
import torch

from hf_unified_pretrain.data import AllImagesUnreadableError, MaskedImageCollator
from hf_unified_pretrain.masking import BlockMaskGenerator, RandomMaskGenerator


def example(index: int, teacher: bool = False, label: int | None = None) -> dict:
    item = {"pixel_values": torch.full((3, 8, 8), float(index))}
    if teacher:
        item["teacher_pixel_values"] = torch.full((3, 4, 4), -float(index))
    if label is not None:
        item["label"] = label
    return item


def test_stacks_images_teacher_inputs_and_adds_exact_random_masks():
    collator = MaskedImageCollator(RandomMaskGenerator(num_tokens=16, mask_ratio=0.75), seed=0)
    batch = collator([example(i, teacher=True) for i in range(5)])
    assert set(batch) == {"pixel_values", "teacher_pixel_values", "bool_masked_pos"}
    assert batch["pixel_values"].shape == (5, 3, 8, 8)
    assert batch["teacher_pixel_values"].shape == (5, 3, 4, 4)
    assert batch["bool_masked_pos"].shape == (5, 16) and batch["bool_masked_pos"].dtype == torch.bool
    assert batch["bool_masked_pos"].sum(dim=1).tolist() == [12] * 5
    assert batch["pixel_values"][:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]


def test_block_masks_and_labels():
    mask_generator = BlockMaskGenerator(grid_size=(4, 4), num_masked=6, min_block_tokens=2)
    collator = MaskedImageCollator(mask_generator, label_column="label", seed=0)
    batch = collator([example(i, label=i % 2) for i in range(3)])
    assert batch["bool_masked_pos"].shape == (3, 16)
    assert batch["bool_masked_pos"].sum(dim=1).tolist() == [6, 6, 6]
    assert batch["labels"].tolist() == [0, 1, 0] and batch["labels"].dtype == torch.long


def test_without_mask_generator_no_mask_is_added():
    batch = MaskedImageCollator()([example(i) for i in range(2)])
    assert set(batch) == {"pixel_values"}


def test_unreadable_examples_are_dropped_and_an_all_unreadable_batch_fails_clearly():
    collator = MaskedImageCollator(RandomMaskGenerator(16, 0.5), seed=0)
    examples = [example(0), {"pixel_values": None}, example(2), {"pixel_values": None, "teacher_pixel_values": None}]
    batch = collator(examples)
    assert batch["pixel_values"][:, 0, 0, 0].tolist() == [0, 2]
    assert batch["bool_masked_pos"].shape == (2, 16)
    with pytest.raises(AllImagesUnreadableError, match="All 2 images of this batch are unreadable"):
        collator([{"pixel_values": None}, {"pixel_values": None}])


def test_seeded_masks_are_reproducible_and_the_collator_pickles_with_its_state():
    examples = [example(i) for i in range(4)]
    first, second = (MaskedImageCollator(RandomMaskGenerator(16, 0.5), seed=3) for _ in range(2))
    masks_first = [first(examples)["bool_masked_pos"] for _ in range(3)]
    masks_second = [second(examples)["bool_masked_pos"] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(masks_first, masks_second, strict=True))
    assert not torch.equal(masks_first[0], masks_first[1])

    copy = pickle.loads(pickle.dumps(first))
    assert torch.equal(copy(examples)["bool_masked_pos"], first(examples)["bool_masked_pos"])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="different shapes"):
        MaskedImageCollator()([example(0), {"pixel_values": torch.zeros(3, 4, 4)}])
    with pytest.raises(KeyError, match="label_column 'label'"):
        MaskedImageCollator(label_column="label")([example(0)])
    with pytest.raises(ValueError, match="mask_generator must return"):
        MaskedImageCollator(lambda batch_size, generator=None: torch.zeros(batch_size, 4))([example(0)])
