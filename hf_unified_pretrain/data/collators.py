"""Data collators for pre-training: stack image tensors, drop unreadable examples, add masks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .randomness import SeededRandomness

logger = logging.getLogger(__name__)

MaskGenerator = Callable[..., torch.Tensor]


class AllImagesUnreadableError(RuntimeError):
    """Raised when every example of a batch was skipped as unreadable."""


class MaskedImageCollator:
    """Collates transformed examples into a batch and adds `bool_masked_pos` from a mask generator.

    Examples are the dicts produced by `ImageBatchTransform` (e.g. `{"pixel_values": (3, H, W)}` and optionally
    `teacher_pixel_values`); an example whose `pixel_values` is None (unreadable image) is dropped. Every key whose
    values are tensors in all kept examples is stacked; other keys are ignored unless named in `label_column`.

    Args:
        mask_generator: Callable `(batch_size, generator=None) -> (B, N) bool` such as
            `hf_unified_pretrain.masking.RandomMaskGenerator` / `BlockMaskGenerator`; None adds no mask (the model
            then samples its own).
        label_column: Example key collated into `labels` (a tensor of ints) when given.
        seed: Seed for reproducible masks in the main process (DataLoader workers use their own per-worker seeded
            RNG). None uses torch's global RNG.

    Returns (when called with a list of B examples, B' of them readable):
        `{"pixel_values": (B', 3, H, W), ["teacher_pixel_values": (B', 3, H_t, W_t)], ["bool_masked_pos": (B', N)
        bool], ["labels": (B',) long]}`.
    """

    def __init__(
        self,
        mask_generator: MaskGenerator | None = None,
        label_column: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.mask_generator = mask_generator
        self.label_column = label_column
        self.rng = SeededRandomness(seed)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if len(examples) == 0:
            raise ValueError(
                "The collator got an empty list of examples (batch size 0): check per_device_train_batch_size and "
                "that the dataset is not empty (e.g. after max_train_samples or filtering)."
            )
        kept = [example for example in examples if example.get("pixel_values") is not None]
        if not kept:
            raise AllImagesUnreadableError(
                f"All {len(examples)} images of this batch are unreadable (skipped), so there is nothing to train on. "
                "Check the dataset files (the first unreadable one was logged), remove or fix them, or use a larger "
                "batch size."
            )
        if len(kept) < len(examples):
            logger.debug("Dropped %d unreadable example(s) of %d.", len(examples) - len(kept), len(examples))

        batch: dict[str, torch.Tensor] = {}
        for key, value in kept[0].items():
            if key == self.label_column or not isinstance(value, torch.Tensor):
                continue
            values = [example.get(key) for example in kept]
            if not all(isinstance(v, torch.Tensor) for v in values):
                raise ValueError(f"Some examples lack a tensor for {key!r}; every readable example needs one.")
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(
                    f"Cannot stack {key!r}: examples have different shapes {sorted(shapes)}; resize them to one size "
                    "in the transform."
                )
            batch[key] = torch.stack(values)

        if self.label_column is not None:
            if any(self.label_column not in example for example in kept):
                raise KeyError(
                    f"label_column {self.label_column!r} is missing from the examples; keep it in the transform "
                    "(keep_columns) or set label_column=None."
                )
            batch["labels"] = torch.as_tensor([example[self.label_column] for example in kept], dtype=torch.long)

        if self.mask_generator is not None:
            mask = self.mask_generator(len(kept), generator=self.rng.generator())
            valid = isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.ndim == 2
            if not valid or len(mask) != len(kept):
                raise ValueError(
                    f"mask_generator must return a (batch_size={len(kept)}, num_tokens) bool tensor, got "
                    f"{type(mask).__name__} {getattr(mask, 'dtype', '')} {tuple(getattr(mask, 'shape', ()))}."
                )
            batch["bool_masked_pos"] = mask
        return batch

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mask_generator={self.mask_generator!r}, label_column={self.label_column!r}, "
            f"seed={self.rng.seed})"
        )
