"""Two independently augmented views per image, for multi-view methods (AMDIM, SimCLR-style InfoNCE, ...).

The recipe is AMDIM's (amdim-public `datasets.py`), written with PIL + numpy (no torchvision): one horizontal flip
shared by both views, then for each view independently a crop (RandomResizedCrop, or for CIFAR a random translation
with reflection padding), a colour jitter applied with a probability (brightness, contrast, saturation and hue in a
random order, as torchvision's `ColorJitter` does on PIL images) and a random grayscale.

`TwoViewTransform` returns `{"pixel_values": (3, H, W), "pixel_values_2": (3, H, W)}`; `TwoViewCollator` stacks both
(and `labels` when asked). Randomness comes from one seeded generator (main process) or the DataLoader worker's RNG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .collators import MaskedImageCollator
from .randomness import SeededRandomness
from .transforms import (
    _as_rgb,
    _check_stats,
    _resampling,
    image_size_from_processor,
    pil_to_normalized_tensor,
    sample_resized_crop_box,
    to_size_tuple,
)

_CROP_MODES = ("random_resized_crop", "translate")


def adjust_hue(image: Image.Image, hue_factor: float) -> Image.Image:
    """Shifts the hue of an RGB image by `hue_factor` turns (in [-0.5, 0.5]), through PIL's HSV (uint8) space."""
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor must be in [-0.5, 0.5], got {hue_factor}.")
    hue, saturation, value = image.convert("HSV").split()
    shifted = (np.asarray(hue, dtype=np.int16) + round(hue_factor * 255)) % 256
    hue = Image.fromarray(shifted.astype(np.uint8), "L")
    return Image.merge("HSV", (hue, saturation, value)).convert("RGB")


def color_jitter(
    image: Image.Image,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    rng: SeededRandomness,
) -> Image.Image:
    """Colour jitter: each enabled adjustment with a factor drawn uniformly (brightness/contrast/saturation in
    [max(0, 1 - s), 1 + s], hue in [-h, h]), applied in a random order (torchvision's `ColorJitter` semantics)."""
    order = torch.randperm(4, generator=rng.generator()).tolist()
    for index in order:
        if index == 0 and brightness > 0:
            image = ImageEnhance.Brightness(image).enhance(rng.uniform(max(0.0, 1 - brightness), 1 + brightness))
        elif index == 1 and contrast > 0:
            image = ImageEnhance.Contrast(image).enhance(rng.uniform(max(0.0, 1 - contrast), 1 + contrast))
        elif index == 2 and saturation > 0:
            image = ImageEnhance.Color(image).enhance(rng.uniform(max(0.0, 1 - saturation), 1 + saturation))
        elif index == 3 and hue > 0:
            image = adjust_hue(image, rng.uniform(-hue, hue))
    return image


def random_photometric(
    image: Image.Image,
    rng: SeededRandomness,
    jitter_probability: float,
    jitter_strengths: tuple[float, float, float, float],
    grayscale_probability: float,
) -> Image.Image:
    """With `jitter_probability` a colour jitter of the given (brightness, contrast, saturation, hue) strengths, then
    with `grayscale_probability` a gray (3-channel) image. The geometry is untouched, so per-view photometric changes
    keep any recorded crop boxes valid. Both draws are always made, so the random stream does not depend on the
    probabilities."""
    if rng.bernoulli(jitter_probability):
        image = color_jitter(image, *jitter_strengths, rng=rng)
    if rng.bernoulli(grayscale_probability):
        image = image.convert("L").convert("RGB")
    return image


def translate_with_reflection(image: Image.Image, dx: int, dy: int) -> Image.Image:
    """Moves the image content by (dx, dy) pixels and fills the uncovered border by reflection (AMDIM's CIFAR crop).

    A positive `dx` moves the content right, a positive `dy` down; the output keeps the input size.
    """
    array = np.asarray(image)
    pad_x, pad_y = abs(dx), abs(dy)
    if pad_x >= array.shape[1] or pad_y >= array.shape[0]:
        raise ValueError(f"Translation ({dx}, {dy}) must be smaller than the image {image.size}.")
    padded = np.pad(array, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="reflect")
    top, left = pad_y - dy, pad_x - dx
    return Image.fromarray(padded[top : top + array.shape[0], left : left + array.shape[1]])


class TwoViewTransform:
    """Two augmented views of one image with a shared horizontal flip (AMDIM's augmentation).

    Args:
        image_size: Output size of both views, int or (height, width).
        image_mean: Per-channel mean in [0, 1] units.
        image_std: Per-channel std in [0, 1] units.
        crop: "random_resized_crop" (STL-10 / ImageNet recipe) or "translate" (CIFAR: random translation by up to
            `max_translation` pixels with reflection padding, applied with `translate_probability`; the image is
            first resized to `image_size` if it differs).
        scale: (min, max) area fraction of the resized crop (AMDIM: 0.3–1).
        ratio: (min, max) aspect ratio w / h of the resized crop (AMDIM: 0.7–1.4).
        max_translation: Largest translation of the "translate" crop (AMDIM: 4 px).
        translate_probability: Probability of translating a view (AMDIM: 0.8).
        flip_probability: Probability of the one horizontal flip shared by both views.
        color_jitter: (brightness, contrast, saturation, hue) strengths (AMDIM: 0.4, 0.4, 0.4 and hue 0.1 on
            ImageNet / 0.2 on CIFAR and STL-10).
        color_jitter_probability: Probability of jittering a view (AMDIM: 0.8).
        grayscale_probability: Probability of turning a view gray (AMDIM: 0.25).
        interpolation: PIL resampling filter name (AMDIM: bicubic).
        seed: Seed of the main-process generator (DataLoader workers use their own seeded RNG); None = global RNG.
    """

    output_keys = ("pixel_values", "pixel_values_2")

    def __init__(
        self,
        image_size: int | Sequence[int] = 128,
        image_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        image_std: Sequence[float] = IMAGENET_DEFAULT_STD,
        crop: str = "random_resized_crop",
        scale: tuple[float, float] = (0.3, 1.0),
        ratio: tuple[float, float] = (0.7, 1.4),
        max_translation: int = 4,
        translate_probability: float = 0.8,
        flip_probability: float = 0.5,
        color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        color_jitter_probability: float = 0.8,
        grayscale_probability: float = 0.25,
        interpolation: str = "bicubic",
        seed: int | None = None,
    ) -> None:
        self.image_size = to_size_tuple(image_size)
        self.image_mean = _check_stats(image_mean, "image_mean")
        self.image_std = _check_stats(image_std, "image_std")
        if crop not in _CROP_MODES:
            raise ValueError(f"crop must be one of {_CROP_MODES}, got {crop!r}.")
        scale, ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max <= 1, got {scale!r}.")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be (min, max) with 0 < min <= max, got {ratio!r}.")
        jitter = tuple(float(v) for v in color_jitter)
        if len(jitter) != 4 or min(jitter) < 0 or jitter[3] > 0.5:
            raise ValueError(
                f"color_jitter must be 4 non-negative strengths (brightness, contrast, saturation, hue <= 0.5), "
                f"got {color_jitter!r}."
            )
        for name, value in (
            ("translate_probability", translate_probability),
            ("flip_probability", flip_probability),
            ("color_jitter_probability", color_jitter_probability),
            ("grayscale_probability", grayscale_probability),
        ):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}.")
        if max_translation < 0:
            raise ValueError(f"max_translation must be >= 0, got {max_translation}.")
        self.crop, self.scale, self.ratio = crop, scale, ratio
        self.max_translation, self.translate_probability = int(max_translation), float(translate_probability)
        self.flip_probability = float(flip_probability)
        self.color_jitter, self.color_jitter_probability = jitter, float(color_jitter_probability)
        self.grayscale_probability = float(grayscale_probability)
        self.interpolation = interpolation
        self._resample = _resampling(interpolation)
        self.rng = SeededRandomness(seed)

    @classmethod
    def from_image_processor(cls, image_processor: Any, **kwargs: Any) -> TwoViewTransform:
        """Builds the transform from a transformers image processor's size, mean and std (kwargs override)."""
        kwargs.setdefault("image_size", image_size_from_processor(image_processor))
        kwargs.setdefault("image_mean", image_processor.image_mean)
        kwargs.setdefault("image_std", image_processor.image_std)
        return cls(**kwargs)

    @classmethod
    def amdim_recipe(cls, image_size: int, **kwargs: Any) -> TwoViewTransform:
        """The original's training augmentation for an encoder size: 32 (CIFAR: translation, hue 0.2), 64 (STL-10:
        resized crop, hue 0.2) or 128 (ImageNet: resized crop, hue 0.1). Normalisation comes from `kwargs`."""
        if image_size == 32:
            recipe = {"crop": "translate", "color_jitter": (0.4, 0.4, 0.4, 0.2)}
        elif image_size == 64:
            recipe = {"crop": "random_resized_crop", "color_jitter": (0.4, 0.4, 0.4, 0.2)}
        elif image_size == 128:
            recipe = {"crop": "random_resized_crop", "color_jitter": (0.4, 0.4, 0.4, 0.1)}
        else:
            raise ValueError(f"AMDIM's recipes exist for 32, 64 and 128 px, got {image_size}.")
        return cls(image_size=image_size, **{**recipe, **kwargs})

    def _view(self, image: Image.Image) -> torch.Tensor:
        height, width = self.image_size
        if self.crop == "random_resized_crop":
            top, left, crop_height, crop_width = sample_resized_crop_box(
                image.height, image.width, self.scale, self.ratio, self.rng
            )
            view = image.resize(
                (width, height), resample=self._resample, box=(left, top, left + crop_width, top + crop_height)
            )
        else:
            view = image if image.size == (width, height) else image.resize((width, height), self._resample)
            if self.max_translation and self.rng.bernoulli(self.translate_probability):
                dx = self.rng.randint(-self.max_translation, self.max_translation)
                dy = self.rng.randint(-self.max_translation, self.max_translation)
                view = translate_with_reflection(view, dx, dy)
        view = random_photometric(
            view, self.rng, self.color_jitter_probability, self.color_jitter, self.grayscale_probability
        )
        return pil_to_normalized_tensor(view, self.image_mean, self.image_std)

    def __call__(self, image: Image.Image | np.ndarray) -> dict[str, torch.Tensor]:
        image = _as_rgb(image)
        if self.rng.bernoulli(self.flip_probability):
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return {"pixel_values": self._view(image), "pixel_values_2": self._view(image)}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_size={self.image_size}, crop={self.crop!r}, scale={self.scale}, "
            f"ratio={self.ratio}, max_translation={self.max_translation}, color_jitter={self.color_jitter}, "
            f"p_jitter={self.color_jitter_probability}, p_gray={self.grayscale_probability}, "
            f"p_flip={self.flip_probability}, seed={self.rng.seed})"
        )


class TwoViewCollator(MaskedImageCollator):
    """Stacks `pixel_values` and `pixel_values_2` (and `labels` from `label_column`), dropping unreadable examples.

    Args:
        label_column: Example key collated into `labels` (ints) when given.
    """

    def __init__(self, label_column: str | None = None) -> None:
        super().__init__(mask_generator=None, label_column=label_column)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = super().__call__(examples)
        if "pixel_values_2" not in batch:
            raise ValueError(
                "TwoViewCollator needs examples with `pixel_values` and `pixel_values_2`: attach a TwoViewTransform "
                "to the dataset."
            )
        return batch

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label_column={self.label_column!r})"


__all__ = ["TwoViewCollator", "TwoViewTransform", "adjust_hue", "color_jitter", "translate_with_reflection"]
