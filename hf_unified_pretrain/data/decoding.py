"""Robust image decoding for `datasets` pipelines: unreadable images are skipped and counted, never a crash.

`datasets` decodes an `Image` column before a format transform sees it, so one corrupt file would raise inside the
DataLoader. `attach_transform` therefore switches the image column to `Image(decode=False)` and `ImageBatchTransform`
decodes each image itself: an image that PIL cannot read becomes an example whose tensors are None, the
`SkippedImageCounter` is incremented, and `MaskedImageCollator` drops the example from its batch.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from datasets import Image as ImageFeature
from PIL import Image
from torch.utils.data import get_worker_info
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

IMAGE_COLUMN = "image"
ImageTransform = Callable[[Image.Image], Mapping[str, torch.Tensor]]


class UnreadableImageError(ValueError):
    """Raised by `decode_image` when an image cannot be decoded."""


def decode_image(value: Any) -> Image.Image:
    """Decodes one image-column value into a fully loaded RGB PIL image.

    Args:
        value: A PIL image, a `datasets` `{"bytes", "path"}` dict, raw bytes, a file path or an (H, W[, C]) uint8
            array.

    Returns:
        RGB PIL image.

    Raises:
        UnreadableImageError: The value is missing, truncated, corrupt or not an image.
    """
    try:
        if isinstance(value, Image.Image):
            image = value
        elif isinstance(value, Mapping):
            if value.get("bytes"):
                image = Image.open(io.BytesIO(value["bytes"]))
            elif value.get("path"):
                image = Image.open(value["path"])
            else:
                raise UnreadableImageError("the image entry has neither bytes nor a path")
        elif isinstance(value, bytes | bytearray):
            image = Image.open(io.BytesIO(value))
        elif isinstance(value, str | os.PathLike):
            image = Image.open(value)
        elif isinstance(value, np.ndarray):
            image = Image.fromarray(value)
        elif value is None:
            raise UnreadableImageError("the image entry is empty (None)")
        else:
            raise UnreadableImageError(f"unsupported image value of type {type(value).__name__}")
        # `load()` forces the full decode so truncated files fail here, not later inside the transform.
        image.load()
        return to_rgb(image)
    except UnreadableImageError:
        raise
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        raise UnreadableImageError(f"{type(error).__name__}: {error}") from error


# Single-channel modes holding more than 8 bits per pixel. PIL's `convert("RGB")` clips them at 255 (a 16-bit
# photograph turns almost white), so they are rescaled from their full range instead.
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def to_rgb(image: Image.Image) -> Image.Image:
    """Converts an image to 8-bit RGB, rescaling high-bit-depth grey images instead of clipping them.

    16-bit modes (`I;16*`) are mapped from [0, 65535]; 32-bit integer (`I`) and float (`F`) images from the
    smallest of [0, 1], [0, 255] or [0, 65535] holding their values (what 8-bit, 16-bit and normalised files
    store). The 8-bit result keeps the image's contrast (the transforms work on 8-bit PIL images).

    Args:
        image: Any PIL image.

    Returns:
        RGB PIL image.
    """
    if image.mode == "RGB":
        return image
    if image.mode not in _HIGH_DEPTH_MODES:
        return image.convert("RGB")
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        full_scale = 65535.0
    else:
        high = float(values.max()) if values.size else 0.0
        full_scale = next((scale for scale in (1.0, 255.0) if high <= scale), 65535.0)
        if image.mode == "I" and full_scale == 1.0:
            full_scale = 255.0  # integers in {0, 1} are 8-bit values, not a [0, 1] range
    eight_bit = np.round(np.clip(values / full_scale, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(eight_bit).convert("RGB")


def _describe(value: Any) -> str:
    if isinstance(value, Mapping) and value.get("path"):
        return str(value["path"])
    if isinstance(value, str | os.PathLike):
        return str(value)
    return f"<in-memory {type(value).__name__}>"


class SkippedImageCounter:
    """Counts skipped (unreadable) images, including those met inside DataLoader worker processes.

    The counts live in a shared-memory tensor with one slot per process (slot 0: main process, slot 1 + k: worker k),
    so workers never race on the same slot and the main process reads the total after training. Each process logs a
    warning for the first image it skips; `log_summary` logs the total once.
    """

    _NUM_WORKER_SLOTS = 64

    def __init__(self) -> None:
        self._counts = torch.zeros(self._NUM_WORKER_SLOTS + 1, dtype=torch.int64).share_memory_()
        self._warned = False
        self._summary_logged = False

    @property
    def count(self) -> int:
        """Number of skip events so far (an unreadable file read in 3 epochs counts 3 times)."""
        return int(self._counts.sum())

    def record(self, description: str, reason: str) -> None:
        """Counts one skipped image; warns once per process."""
        worker = get_worker_info()
        slot = 0 if worker is None else 1 + worker.id % self._NUM_WORKER_SLOTS
        self._counts[slot] += 1
        if not self._warned:
            self._warned = True
            logger.warning(
                "Skipping unreadable image %s (%s). Further unreadable images are skipped and counted silently; "
                "the total is reported at the end of training.",
                description,
                reason,
            )

    def reset(self) -> None:
        """Sets the count back to zero."""
        self._counts.zero_()
        self._summary_logged = False

    def log_summary(self) -> int:
        """Logs the total number of skipped images once (when non-zero) and returns it."""
        count = self.count
        if count and not self._summary_logged:
            self._summary_logged = True
            logger.warning("%d unreadable image(s) were skipped.", count)
        return count

    def __repr__(self) -> str:
        return f"SkippedImageCounter(count={self.count})"


class ImageBatchTransform:
    """`set_transform` function: decodes a batch robustly and applies an image transform to each image.

    Args:
        transform: Callable mapping an RGB PIL image to a dict of tensors (e.g. `PretrainingTransform`).
        image_column: Name of the image column.
        keep_columns: Other columns passed through unchanged (e.g. "label").
        counter: Counter of skipped images (a new one by default; read it via `.counter.count`).

    Calling it with a batch `{column: list}` of B rows returns `{key: list of B}` for every key the transform
    produces, with None entries for unreadable images, plus the kept columns.
    """

    def __init__(
        self,
        transform: ImageTransform,
        image_column: str = IMAGE_COLUMN,
        keep_columns: Sequence[str] = (),
        counter: SkippedImageCounter | None = None,
    ) -> None:
        self.transform = transform
        self.image_column = image_column
        self.keep_columns = tuple(keep_columns)
        self.counter = counter if counter is not None else SkippedImageCounter()

    def __call__(self, batch: Mapping[str, list]) -> dict[str, list]:
        if self.image_column not in batch:
            raise KeyError(
                f"Column {self.image_column!r} is missing from the batch (columns: {sorted(batch)}). Pass the right "
                "image_column, and train with remove_unused_columns=False so the Trainer keeps it."
            )
        results: list[Mapping[str, torch.Tensor] | None] = []
        for value in batch[self.image_column]:
            try:
                image = decode_image(value)
            except UnreadableImageError as error:
                self.counter.record(_describe(value), str(error))
                results.append(None)
                continue
            results.append(self.transform(image))
        keys = list(getattr(self.transform, "output_keys", ()))
        for result in results:
            keys.extend(key for key in (result or {}) if key not in keys)
        keys = keys or ["pixel_values"]
        output = {key: [None if result is None else result[key] for result in results] for key in keys}
        for column in self.keep_columns:
            output[column] = list(batch[column])
        return output

    def __repr__(self) -> str:
        return f"{type(self).__name__}(transform={self.transform!r}, image_column={self.image_column!r})"


def attach_transform(
    dataset: Dataset | IterableDataset,
    transform: ImageTransform,
    image_column: str = IMAGE_COLUMN,
    keep_columns: Sequence[str] = (),
    counter: SkippedImageCounter | None = None,
) -> tuple[Dataset | IterableDataset, ImageBatchTransform]:
    """Applies `transform` lazily to a dataset with skip-and-count decoding.

    A `Dataset` gets `set_transform` (in place on a shallow copy); an `IterableDataset` gets a lazy batched `map`
    that replaces its columns.

    Args:
        dataset: Dataset with an image column.
        transform: Image transform (e.g. `PretrainingTransform`).
        image_column: Name of the image column.
        keep_columns: Columns kept next to the transform outputs.
        counter: Shared skip counter (e.g. one for train and validation); a new one by default.

    Returns:
        (transformed dataset, the `ImageBatchTransform`, whose `.counter` holds the skip count).
    """
    columns = dataset.column_names
    if columns is not None and image_column not in columns:
        raise KeyError(f"Image column {image_column!r} not found; the dataset has columns {columns}.")
    missing = [column for column in keep_columns if columns is not None and column not in columns]
    if missing:
        raise KeyError(f"keep_columns {missing} not found; the dataset has columns {columns}.")
    batch_transform = ImageBatchTransform(transform, image_column, keep_columns, counter)
    features = dataset.features
    if features is not None and isinstance(features.get(image_column), ImageFeature):
        dataset = dataset.cast_column(image_column, ImageFeature(decode=False))
    if isinstance(dataset, IterableDataset):
        return dataset.map(batch_transform, batched=True, remove_columns=columns), batch_transform
    dataset = dataset.with_format(None)
    dataset.set_transform(batch_transform)
    return dataset, batch_transform


def attach_transforms(
    datasets: DatasetDict | IterableDatasetDict,
    train_transform: ImageTransform,
    eval_transform: ImageTransform | None = None,
    image_column: str = IMAGE_COLUMN,
    keep_columns: Sequence[str] = (),
    train_split: str = "train",
) -> tuple[DatasetDict | IterableDatasetDict, SkippedImageCounter]:
    """Applies `train_transform` to the train split and `eval_transform` (default: the same) to the others.

    Returns:
        (the transformed dataset dict, one `SkippedImageCounter` shared by all splits).
    """
    counter = SkippedImageCounter()
    output = type(datasets)()
    for split, dataset in datasets.items():
        transform = train_transform if split == train_split or eval_transform is None else eval_transform
        output[split], _ = attach_transform(dataset, transform, image_column, keep_columns, counter)
    return output, counter


class SkippedImagesCallback(TrainerCallback):
    """Trainer callback that logs the number of skipped images once at the end of training.

    Args:
        counter: The counter returned by `attach_transforms` (or `ImageBatchTransform.counter`).
    """

    def __init__(self, counter: SkippedImageCounter) -> None:
        self.counter = counter

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.counter.log_summary()
