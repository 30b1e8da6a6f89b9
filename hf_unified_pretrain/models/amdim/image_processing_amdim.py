# Copyright 2026 The hf_unified_pretrain Authors. Licensed under the Apache License, Version 2.0.
"""Image processor for AMDIM encoders (PIL backend; no torchvision needed)."""

from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

# The original's CIFAR-10 normalisation (datasets.py, `TransformsC10`).
CIFAR10_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR10_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)


class AMDIMImageProcessor(PilBackend):
    """Evaluation pre-processing of the original at 128 px: resize the shorter side to 146 (bicubic), center-crop
    128, rescale to [0, 1], normalise with the ImageNet mean/std. For the 32-px (CIFAR) encoder use
    `AMDIMImageProcessor.for_image_size(32)`: no resize or crop, CIFAR-10 statistics as the original."""

    # Grayscale, RGBA, CMYK and palette images become RGB, so any photo a user opens works (as CLIP's).
    do_convert_rgb = True
    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 146}
    crop_size = {"height": 128, "width": 128}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True

    @classmethod
    def for_image_size(cls, image_size: int) -> "AMDIMImageProcessor":
        """The original's test transform for an encoder size: 32 (CIFAR), 64 (STL-10: resize 70, crop 64) or 128."""
        if image_size == 32:
            return cls(
                do_resize=True,
                size={"height": 32, "width": 32},
                do_center_crop=False,
                image_mean=list(CIFAR10_MEAN),
                image_std=list(CIFAR10_STD),
            )
        if image_size == 64:
            return cls(
                size={"shortest_edge": 70},
                crop_size={"height": 64, "width": 64},
                image_mean=[0.43, 0.42, 0.39],
                image_std=[0.27, 0.26, 0.27],
            )
        if image_size == 128:
            return cls()
        raise ValueError(f"AMDIM encoders take 32, 64 or 128 px, got {image_size}.")


__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "AMDIMImageProcessor"]
