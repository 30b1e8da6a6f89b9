"""Image transforms for pre-training and evaluation, written with PIL + numpy + torch (no torchvision).

Both transforms take one PIL image and return a dict of tensors:

- `pixel_values`: (3, H, W) float32, normalised with the student's `image_mean` / `image_std`;
- `teacher_pixel_values` (only when a teacher normalisation is configured): (3, H_t, W_t) float32, the *same* crop and
  flip resampled to the teacher's input size and normalised with the teacher's mean / std. Frozen-teacher methods
  (MVP, iTPN-CLIP) feed it to the teacher so that the teacher sees exactly what the student sees.

The crop is resampled straight from the source image (`PIL.Image.resize(..., box=crop_box)`), so student and teacher
inputs come from one region of the original pixels, each with a single resampling step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .embedded import DEFAULT_IMAGE_SIZE
from .randomness import SeededRandomness

_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

# (left, top, right, bottom) in source pixel coordinates, as PIL expects for `box`.
CropBox = tuple[float, float, float, float]


def to_size_tuple(size: int | Sequence[int], name: str = "image_size") -> tuple[int, int]:
    """Normalises an int or (height, width) pair to a (height, width) tuple of positive ints."""
    if isinstance(size, int | np.integer):
        height = width = int(size)
    elif isinstance(size, Sequence) and len(size) == 2:
        height, width = int(size[0]), int(size[1])
    else:
        raise ValueError(f"{name} must be an int or a (height, width) pair, got {size!r}.")
    if height <= 0 or width <= 0:
        raise ValueError(f"{name} must be positive, got {size!r}.")
    return height, width


def image_size_from_processor(image_processor: Any) -> tuple[int, int]:
    """Reads the (height, width) input size of a transformers image processor.

    Accepts `size` as {"height", "width"}, {"shortest_edge"} (square crop of that edge) or an int, and prefers
    `crop_size` when the processor center-crops.
    """
    size = getattr(image_processor, "crop_size", None) if getattr(image_processor, "do_center_crop", False) else None
    size = size if size is not None else getattr(image_processor, "size", None)
    if size is None:
        raise ValueError(f"{type(image_processor).__name__} has no `size`; pass image_size explicitly.")
    if isinstance(size, int):
        return size, size

    def read(key: str) -> int | None:
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        return int(value) if value is not None else None

    height, width, shortest = read("height"), read("width"), read("shortest_edge")
    if height is not None and width is not None:
        return height, width
    if shortest is not None:
        return shortest, shortest
    raise ValueError(f"Cannot read an input size from {type(image_processor).__name__}.size={size!r}.")


def _check_stats(values: Sequence[float], name: str) -> tuple[float, float, float]:
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (one per RGB channel), got {values!r}.")
    if name.endswith("std") and any(v <= 0 for v in values):
        raise ValueError(f"{name} must be positive, got {values!r}.")
    return values


def _resampling(interpolation: str) -> Image.Resampling:
    try:
        return _INTERPOLATIONS[interpolation]
    except KeyError:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}.") from None


def pil_to_normalized_tensor(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Converts an RGB PIL image to a normalised tensor.

    Args:
        image: RGB PIL image of size (W, H).
        mean: Per-channel mean in [0, 1] units.
        std: Per-channel std in [0, 1] units.

    Returns:
        (3, H, W) float32 tensor `(pixels / 255 - mean) / std`.
    """
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def _as_rgb(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"Expected a PIL image or a uint8 numpy array, got {type(image).__name__}.")
    return image if image.mode == "RGB" else image.convert("RGB")


class _PairedOutputTransform:
    """Shared output stage: resample one crop box to the student (and optional teacher) size, flip, normalise."""

    def __init__(
        self,
        image_size: int | Sequence[int],
        image_mean: Sequence[float],
        image_std: Sequence[float],
        interpolation: str,
        teacher_image_size: int | Sequence[int] | None,
        teacher_image_mean: Sequence[float] | None,
        teacher_image_std: Sequence[float] | None,
    ) -> None:
        self.image_size = to_size_tuple(image_size)
        self.image_mean = _check_stats(image_mean, "image_mean")
        self.image_std = _check_stats(image_std, "image_std")
        self.interpolation = interpolation
        self._resample = _resampling(interpolation)
        if (teacher_image_mean is None) != (teacher_image_std is None):
            raise ValueError("Pass both teacher_image_mean and teacher_image_std (or neither).")
        if teacher_image_mean is None and teacher_image_size is not None:
            raise ValueError(
                "teacher_image_size was given without teacher_image_mean / teacher_image_std; pass the teacher's "
                "normalisation too (e.g. CLIP's mean/std) to get `teacher_pixel_values`."
            )
        self.with_teacher = teacher_image_mean is not None
        if self.with_teacher:
            self.teacher_image_size = to_size_tuple(
                teacher_image_size if teacher_image_size is not None else self.image_size, "teacher_image_size"
            )
            self.teacher_image_mean = _check_stats(teacher_image_mean, "teacher_image_mean")
            self.teacher_image_std = _check_stats(teacher_image_std, "teacher_image_std")

    @property
    def output_keys(self) -> tuple[str, ...]:
        """Keys of the dict returned by `__call__`."""
        return ("pixel_values", "teacher_pixel_values") if self.with_teacher else ("pixel_values",)

    def _render(self, image: Image.Image, box: CropBox, flip: bool) -> dict[str, torch.Tensor]:
        height, width = self.image_size
        student = image.resize((width, height), resample=self._resample, box=box)
        if flip:
            student = student.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        output = {"pixel_values": pil_to_normalized_tensor(student, self.image_mean, self.image_std)}
        if self.with_teacher:
            teacher_height, teacher_width = self.teacher_image_size
            teacher = image.resize((teacher_width, teacher_height), resample=self._resample, box=box)
            if flip:
                teacher = teacher.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            output["teacher_pixel_values"] = pil_to_normalized_tensor(
                teacher, self.teacher_image_mean, self.teacher_image_std
            )
        return output


def sample_resized_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: SeededRandomness,
    max_attempts: int = 10,
) -> tuple[int, int, int, int]:
    """Samples a RandomResizedCrop region (Inception-style area/aspect sampling).

    Tries `max_attempts` times to draw an area fraction uniform in `scale` and a log-uniform aspect ratio (w / h) in
    `ratio` that fits the image; otherwise falls back to the largest centred crop whose aspect lies within `ratio`.

    Args:
        height: Source image height.
        width: Source image width.
        scale: (min, max) fraction of the source area.
        ratio: (min, max) aspect ratio width / height.
        rng: Randomness source.
        max_attempts: Number of rejection-sampling attempts.

    Returns:
        (top, left, crop_height, crop_width) in integer pixels.
    """
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(max_attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_low, log_high))
        crop_width = round(math.sqrt(target_area * aspect))
        crop_height = round(math.sqrt(target_area / aspect))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = rng.randint(0, height - crop_height)
            left = rng.randint(0, width - crop_width)
            return top, left, crop_height, crop_width
    source_aspect = width / height
    if source_aspect < ratio[0]:
        crop_width, crop_height = width, round(width / ratio[0])
    elif source_aspect > ratio[1]:
        crop_width, crop_height = round(height * ratio[1]), height
    else:
        crop_width, crop_height = width, height
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


class PretrainingTransform(_PairedOutputTransform):
    """RandomResizedCrop + random horizontal flip + to-tensor + normalisation (the MAE/BEiT pre-training pipeline).

    Args:
        image_size: Output size, int or (height, width).
        image_mean: Per-channel mean in [0, 1] units.
        image_std: Per-channel std in [0, 1] units.
        scale: (min, max) crop area as a fraction of the image.
        ratio: (min, max) crop aspect ratio (width / height).
        hflip: Whether to flip horizontally with probability 0.5.
        interpolation: PIL resampling filter name ("bicubic", "bilinear", ...).
        teacher_image_size: Teacher input size (defaults to `image_size`); only with a teacher normalisation.
        teacher_image_mean: Teacher mean; when set (with `teacher_image_std`) the output has `teacher_pixel_values`.
        teacher_image_std: Teacher std.
        seed: Seed for reproducible crops and flips in the main process (DataLoader workers use their own
            per-worker seeded RNG, see `SeededRandomness`). None uses torch's global RNG.

    Call with a PIL image (any mode; converted to RGB) to get `{"pixel_values": (3, H, W) float32}` plus
    `teacher_pixel_values` (3, H_t, W_t) when a teacher normalisation is set.
    """

    def __init__(
        self,
        image_size: int | Sequence[int] = DEFAULT_IMAGE_SIZE,
        image_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        image_std: Sequence[float] = IMAGENET_DEFAULT_STD,
        scale: tuple[float, float] = (0.2, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: bool = True,
        interpolation: str = "bicubic",
        teacher_image_size: int | Sequence[int] | None = None,
        teacher_image_mean: Sequence[float] | None = None,
        teacher_image_std: Sequence[float] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            image_size, image_mean, image_std, interpolation, teacher_image_size, teacher_image_mean, teacher_image_std
        )
        scale, ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max <= 1, got {scale!r}.")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be (min, max) with 0 < min <= max, got {ratio!r}.")
        self.scale, self.ratio, self.hflip = scale, ratio, hflip
        self.rng = SeededRandomness(seed)

    @classmethod
    def from_image_processor(cls, image_processor: Any, **kwargs: Any) -> PretrainingTransform:
        """Builds the transform from a transformers image processor's size, mean and std (kwargs override)."""
        kwargs.setdefault("image_size", image_size_from_processor(image_processor))
        kwargs.setdefault("image_mean", image_processor.image_mean)
        kwargs.setdefault("image_std", image_processor.image_std)
        return cls(**kwargs)

    def __call__(self, image: Image.Image | np.ndarray) -> dict[str, torch.Tensor]:
        image = _as_rgb(image)
        top, left, crop_height, crop_width = sample_resized_crop_box(
            image.height, image.width, self.scale, self.ratio, self.rng
        )
        flip = self.hflip and self.rng.bernoulli(0.5)
        return self._render(image, (left, top, left + crop_width, top + crop_height), flip)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_size={self.image_size}, scale={self.scale}, ratio={self.ratio}, "
            f"hflip={self.hflip}, interpolation={self.interpolation!r}, with_teacher={self.with_teacher}, "
            f"seed={self.rng.seed})"
        )


class EvalTransform(_PairedOutputTransform):
    """Resize + center crop + to-tensor + normalisation (deterministic evaluation pipeline).

    The image is scaled so that it covers `image_size / crop_pct` (for a square output: shorter side =
    `image_size / crop_pct`, e.g. 256 for 224 at the default 0.875), then the centred `image_size` region is kept.

    Args:
        image_size: Output size, int or (height, width).
        image_mean: Per-channel mean in [0, 1] units.
        image_std: Per-channel std in [0, 1] units.
        crop_pct: Fraction of the resized image kept by the center crop, in (0, 1].
        interpolation: PIL resampling filter name.
        teacher_image_size: Teacher input size (defaults to `image_size`); only with a teacher normalisation.
        teacher_image_mean: Teacher mean; when set (with `teacher_image_std`) the output has `teacher_pixel_values`.
        teacher_image_std: Teacher std.
    """

    def __init__(
        self,
        image_size: int | Sequence[int] = DEFAULT_IMAGE_SIZE,
        image_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        image_std: Sequence[float] = IMAGENET_DEFAULT_STD,
        crop_pct: float = 0.875,
        interpolation: str = "bicubic",
        teacher_image_size: int | Sequence[int] | None = None,
        teacher_image_mean: Sequence[float] | None = None,
        teacher_image_std: Sequence[float] | None = None,
    ) -> None:
        super().__init__(
            image_size, image_mean, image_std, interpolation, teacher_image_size, teacher_image_mean, teacher_image_std
        )
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct!r}.")
        self.crop_pct = float(crop_pct)

    @classmethod
    def from_image_processor(cls, image_processor: Any, **kwargs: Any) -> EvalTransform:
        """Builds the transform from a transformers image processor's size, mean and std (kwargs override)."""
        kwargs.setdefault("image_size", image_size_from_processor(image_processor))
        kwargs.setdefault("image_mean", image_processor.image_mean)
        kwargs.setdefault("image_std", image_processor.image_std)
        return cls(**kwargs)

    def center_crop_box(self, height: int, width: int) -> CropBox:
        """The source-pixel region that resize + center crop keeps, as a PIL (left, top, right, bottom) box."""
        out_height, out_width = self.image_size
        # Scale factor that makes the source cover (out / crop_pct); the kept window is `out` pixels of that.
        factor = max(out_height / self.crop_pct / height, out_width / self.crop_pct / width)
        keep_height, keep_width = out_height / factor, out_width / factor
        top, left = (height - keep_height) / 2, (width - keep_width) / 2
        return left, top, left + keep_width, top + keep_height

    def __call__(self, image: Image.Image | np.ndarray) -> dict[str, torch.Tensor]:
        image = _as_rgb(image)
        return self._render(image, self.center_crop_box(image.height, image.width), flip=False)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_size={self.image_size}, crop_pct={self.crop_pct}, "
            f"interpolation={self.interpolation!r}, with_teacher={self.with_teacher})"
        )
