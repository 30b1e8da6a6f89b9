"""Image processor for MultiMAE (PIL backend): RGB as any ViT, plus depth and semantic maps for multi-modal inputs.

`__call__` / `preprocess` handle RGB images (bicubic resize to 224x224, rescale, ImageNet mean/std, as the original's
`imagenet_default_mean_and_std` pipeline). `preprocess_modalities` handles a whole multi-modal batch: RGB as above,
depth resized bilinearly and kept at full precision (16-bit PNG or float arrays, never converted to RGB), optionally
standardised per image with the original's 10 % outlier trimming, with invalid values (NaN, inf, <= 0) masked, and
semantic maps resized with nearest neighbours to 1/`stride` of the image (the original stores them at 1/4).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from ...objectives.multimodal import standardize_depth


def _to_array(image: Any) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype == object:
        raise TypeError(f"Cannot read {type(image).__name__} as an array.")
    return array


class MultiMAEImageProcessor(PilBackend):
    """RGB: bicubic resize to 224x224, rescale to [0, 1], ImageNet mean/std. Other modalities: `preprocess_modalities`."""

    # Grayscale, RGBA, CMYK and palette images become RGB, so any photo a user opens works (as CLIP's).
    do_convert_rgb = True
    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    do_normalize = True

    def preprocess_modalities(
        self,
        rgb: Sequence[Any] | None = None,
        depth: Sequence[Any] | None = None,
        semseg: Sequence[Any] | None = None,
        *,
        semseg_stride: int = 4,
        standardize_depth_maps: bool = True,
        depth_trim_fraction: float = 0.1,
        num_semseg_classes: int | None = None,
        ignore_index: int = 255,
        size: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Prepares a multi-modal batch (lists of PIL images / arrays / tensors, one entry per sample).

        Args:
            rgb: Images (H, W, 3) or PIL.
            depth: Depth maps (H, W) of any dtype (uint16 PNG values, float metres, ...).
            semseg: Label maps (H, W) of integer class indices (uint8 or uint16 PNG for > 255 classes).
            semseg_stride: The semantic map is returned at 1/stride of the image size.
            standardize_depth_maps: Per-image standardisation with trimming (config.standardize_depth).
            depth_trim_fraction: Fraction trimmed at each end for the depth statistics.
            num_semseg_classes: When given, labels outside [0, num) other than `ignore_index` raise.
            ignore_index: Label kept as is (never scored).
            size: Output {"height", "width"} (default: the processor's size).

        Returns:
            {"modalities": {"rgb": (B, 3, H, W), "depth": (B, 1, H, W) float32, "semseg": (B, H/s, W/s) long},
            "valid_masks": {"depth": (B, H, W) bool}} for the modalities given.
        """
        size = size or self.size
        height, width = int(size["height"]), int(size["width"])
        modalities: dict[str, torch.Tensor] = {}
        valid_masks: dict[str, torch.Tensor] = {}
        if rgb is not None:
            modalities["rgb"] = self(list(rgb), return_tensors="pt", size={"height": height, "width": width})[
                "pixel_values"
            ]
        if depth is not None:
            maps, valids = [], []
            for item in depth:
                array = _to_array(item).astype(np.float32)
                if array.ndim == 3:
                    if array.shape[-1] != 1:
                        raise ValueError(
                            f"Depth maps must have one channel, got shape {array.shape}: pass the raw depth (H, W), "
                            "not a colour-mapped image."
                        )
                    array = array[..., 0]
                values = torch.from_numpy(array)[None, None]
                valid = torch.isfinite(values) & (values > 0)
                values = torch.where(valid, values, torch.zeros_like(values))
                values = F.interpolate(values, size=(height, width), mode="bilinear", align_corners=False)
                valid = F.interpolate(valid.float(), size=(height, width), mode="nearest") > 0.5
                maps.append(values)
                valids.append(valid)
            values, valid = torch.cat(maps), torch.cat(valids)
            if standardize_depth_maps:
                values = standardize_depth(values, depth_trim_fraction, valid_mask=valid)
            modalities["depth"] = values
            valid_masks["depth"] = valid[:, 0]
        if semseg is not None:
            maps = []
            for item in semseg:
                array = _to_array(item)
                if array.ndim == 3:
                    array = array[..., 0]
                labels = torch.from_numpy(array.astype(np.int64))[None, None].float()
                labels = F.interpolate(labels, size=(height // semseg_stride, width // semseg_stride), mode="nearest")
                maps.append(labels[:, 0].long())
            labels = torch.cat(maps)
            if num_semseg_classes is not None:
                bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_semseg_classes))
                if bad.any():
                    raise ValueError(
                        f"Semantic maps hold labels outside [0, {num_semseg_classes}) other than the ignore index "
                        f"{ignore_index}: {sorted(set(labels[bad].tolist()))[:10]}."
                    )
            modalities["semseg"] = labels
        if not modalities:
            raise ValueError("preprocess_modalities needs at least one of rgb, depth, semseg.")
        return {"modalities": modalities, "valid_masks": valid_masks}


__all__ = ["MultiMAEImageProcessor"]
