"""Multi-modal samples (MultiMAE): one dict of modalities per sample, one crop box and flip for all of them.

A sample is `{"rgb": ..., "depth": ..., "semseg": ...}` (any subset, names free). Kinds decide how a modality is read
and resized:

- "image": decoded to 8-bit RGB, resized bicubically (bilinear on request), normalised with the mean/std;
- "depth": kept at its bit depth (16-bit PNG values, 32-bit / float images, `.npy` arrays; never converted to RGB),
  resized bilinearly, invalid values (NaN, inf, <= 0) masked: they stay out of the resizing (a normalised
  convolution over valid pixels), out of the per-image standardisation (`standardize_depth`, with the original's 10 %
  trimming) and come out as 0 with `valid_masks[name]` False so that the loss never scores them;
- "segmentation": class indices (8-bit or 16-bit PNG, so more than 255 classes work), resized with nearest
  neighbours to 1/`stride_level` of the image (the original stores semseg at 1/4); labels outside [0, num_classes)
  other than the ignore index raise.

Datasets: `load_multimodal_folder` (one sub-folder per modality, matching file stems), `load_single_modality_folder`
(a plain RGB image folder, class sub-folders allowed), any `datasets` dataset with
one column per modality (`MultiModalTransform(columns=...)`), or RGB-only data plus pseudo labels
(`hf_unified_pretrain.data.pseudo_labels.pseudo_label_dataset`). `MultiModalCollator` stacks samples and adds
per-modality masks from a Dirichlet generator.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from PIL import Image

from ..objectives.multimodal import standardize_depth
from .decoding import UnreadableImageError, decode_image
from .randomness import SeededRandomness
from .transforms import sample_resized_crop_box

MODALITY_KINDS = ("image", "depth", "segmentation")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".npy")


@dataclass(frozen=True)
class ModalityField:
    """How one modality of a sample is read and resized.

    Args:
        name: Key in the sample (and in the model's `modalities`).
        kind: "image", "depth" or "segmentation".
        stride_level: Output resolution is the image size divided by this (4 for the original semseg).
        num_classes: Segmentation only: labels must lie in [0, num_classes) or equal `ignore_index`.
        ignore_index: Segmentation label that is kept as is (never scored).
        column: Dataset column holding the modality (default: `name`).
    """

    name: str
    kind: str = "image"
    stride_level: int = 1
    num_classes: int | None = None
    ignore_index: int = 255
    column: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in MODALITY_KINDS:
            raise ValueError(f"Modality {self.name!r}: kind must be one of {MODALITY_KINDS}, got {self.kind!r}.")


def fields_from_config(config: Any, columns: Mapping[str, str] | None = None) -> list[ModalityField]:
    """`ModalityField`s for every modality of a MultiMAE-style config (`config.modalities` dicts)."""
    columns = dict(columns or {})
    fields = []
    for spec in config.modalities:
        fields.append(
            ModalityField(
                name=spec["name"],
                kind=spec["kind"],
                stride_level=spec.get("stride_level", 1),
                num_classes=spec.get("num_classes") or None,
                ignore_index=spec.get("ignore_index", 255),
                column=columns.get(spec["name"]),
            )
        )
    return fields


# ---- reading ----------------------------------------------------------------------------------------------------


def _open(value: Any) -> Image.Image | np.ndarray:
    if isinstance(value, (Image.Image, np.ndarray)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return Image.open(io.BytesIO(value["bytes"]))
        if value.get("path"):
            return _open(value["path"])
        raise UnreadableImageError("the entry has neither bytes nor a path")
    if isinstance(value, (bytes, bytearray)):
        return Image.open(io.BytesIO(value))
    if isinstance(value, (str, os.PathLike)):
        if str(value).endswith(".npy"):
            return np.load(value, allow_pickle=False)
        return Image.open(value)
    if isinstance(value, list):
        return np.asarray(value)
    if value is None:
        raise UnreadableImageError("the entry is empty (None)")
    raise UnreadableImageError(f"unsupported value of type {type(value).__name__}")


def read_depth(value: Any) -> np.ndarray:
    """(H, W) float32 depth at the file's own precision (16-bit PNG values are kept, not scaled to 8 bits)."""
    opened = _open(value)
    array = np.asarray(opened)
    if array.ndim == 3:
        if array.shape[-1] != 1:
            raise ValueError(
                f"A depth map must have one channel, got shape {array.shape}; pass the raw depth, not a colour-mapped "
                "visualisation."
            )
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"A depth map must be (height, width), got shape {array.shape}.")
    return array.astype(np.float32)


def read_segmentation(value: Any) -> np.ndarray:
    """(H, W) int64 class indices (8- or 16-bit PNG, palette PNG, integer arrays)."""
    opened = _open(value)
    if isinstance(opened, Image.Image) and opened.mode in ("RGB", "RGBA"):
        raise ValueError("A segmentation map must hold class indices (mode L, P, I;16 or I), not colours (RGB).")
    array = np.asarray(opened)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"A segmentation map must be (height, width) integers, got {array.dtype} {array.shape}.")
    return array.astype(np.int64)


def _size_of(value: Image.Image | np.ndarray) -> tuple[int, int]:
    return (value.height, value.width) if isinstance(value, Image.Image) else tuple(value.shape[:2])


# ---- transform --------------------------------------------------------------------------------------------------


class MultiModalTransform:
    """One random resized crop box and one horizontal flip applied to every modality of a sample.

    Args:
        fields: The modalities (`ModalityField`s, or `fields_from_config(config)`).
        image_size: Output (H, W) at full resolution (int for square).
        train: Random crop + flip (True) or a plain resize of the whole image (False).
        scale / ratio: RandomResizedCrop area and aspect ranges (MultiMAE pre-training: scale (0.2, 1.0)).
        hflip: Probability of the horizontal flip.
        mean / std: Normalisation of image modalities.
        image_interpolation: "bicubic" (the original's default) or "bilinear".
        standardize_depth_maps: Per-image depth standardisation with trimming (config.standardize_depth).
        depth_trim_fraction: Trimmed fraction at each end for the depth statistics.
        seed: Seed of the crop/flip randomness (None: fresh randomness).

    Returns (when called on one sample dict): `{"modalities": {name: tensor}, "valid_masks": {depth name: (H, W)
    bool}}`; image (3, H, W), depth (1, H, W) float32, segmentation (H/s, W/s) long.
    """

    def __init__(
        self,
        fields: Sequence[ModalityField],
        image_size: int | Sequence[int] = 224,
        *,
        train: bool = True,
        scale: tuple[float, float] = (0.2, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        image_interpolation: str = "bicubic",
        standardize_depth_maps: bool = True,
        depth_trim_fraction: float = 0.1,
        seed: int | None = None,
    ) -> None:
        if not fields:
            raise ValueError("MultiModalTransform needs at least one modality field.")
        self.fields = list(fields)
        self.image_size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        for field in self.fields:
            if self.image_size[0] % field.stride_level or self.image_size[1] % field.stride_level:
                raise ValueError(f"image_size {self.image_size} is not divisible by {field.name}'s stride level.")
        self.train, self.scale, self.ratio, self.hflip = train, scale, ratio, hflip
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        if image_interpolation not in ("bicubic", "bilinear"):
            raise ValueError(f"image_interpolation must be 'bicubic' or 'bilinear', got {image_interpolation!r}.")
        self.resample = Image.Resampling.BICUBIC if image_interpolation == "bicubic" else Image.Resampling.BILINEAR
        self.standardize_depth_maps = standardize_depth_maps
        self.depth_trim_fraction = depth_trim_fraction
        self.rng = SeededRandomness(seed)

    def read(self, sample: Mapping[str, Any]) -> dict[str, Image.Image | np.ndarray]:
        """Decodes every modality present in the sample (missing ones are skipped; none at all raises)."""
        known = {field.column or field.name for field in self.fields}
        values = {}
        for field in self.fields:
            key = field.column or field.name
            if key not in sample or sample[key] is None:
                continue
            if field.kind == "image":
                values[field.name] = decode_image(sample[key])
            elif field.kind == "depth":
                values[field.name] = read_depth(sample[key])
            else:
                values[field.name] = read_segmentation(sample[key])
        if not values:
            raise KeyError(
                f"The sample holds none of the modalities {sorted(known)} (its keys: {sorted(sample)}); map the "
                "dataset columns with ModalityField(column=...)."
            )
        return values

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
        values = self.read(sample)
        sizes = {name: _size_of(value) for name, value in values.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(
                f"The modalities of a sample have different sizes {sizes}: store them at one resolution (the "
                "transform applies one crop box to all and resizes segmentation maps itself)."
            )
        height, width = next(iter(sizes.values()))
        if self.train:
            box = sample_resized_crop_box(height, width, self.scale, self.ratio, self.rng)
            flip = self.rng.bernoulli(self.hflip)
        else:
            box, flip = (0, 0, height, width), False
        by_name = {field.name: field for field in self.fields}
        modalities: dict[str, torch.Tensor] = {}
        valid_masks: dict[str, torch.Tensor] = {}
        for name, value in values.items():
            field = by_name[name]
            if field.kind == "image":
                modalities[name] = self._image(value, box, flip)
            elif field.kind == "depth":
                modalities[name], valid_masks[name] = self._depth(value, box, flip)
            else:
                modalities[name] = self._segmentation(value, box, flip, field)
        return {"modalities": modalities, "valid_masks": valid_masks}

    def _image(self, image: Image.Image, box, flip: bool) -> torch.Tensor:
        top, left, crop_h, crop_w = box
        image = image.resize(
            (self.image_size[1], self.image_size[0]), self.resample, box=(left, top, left + crop_w, top + crop_h)
        )
        if flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        tensor = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
        return (tensor - self.mean) / self.std

    def _depth(self, depth: np.ndarray, box, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
        top, left, crop_h, crop_w = box
        values = torch.from_numpy(depth[top : top + crop_h, left : left + crop_w].copy())[None, None]
        valid = (torch.isfinite(values) & (values > 0)).float()
        values = torch.where(valid > 0, values, torch.zeros_like(values))
        # Normalised convolution: invalid pixels do not drag the interpolated depth towards 0.
        weight = F.interpolate(valid, size=self.image_size, mode="bilinear", align_corners=False)
        resized = F.interpolate(values * valid, size=self.image_size, mode="bilinear", align_corners=False)
        resized = torch.where(weight > 1e-6, resized / weight.clamp_min(1e-6), torch.zeros_like(resized))
        valid_out = F.interpolate(valid, size=self.image_size, mode="nearest") > 0.5
        if flip:
            resized, valid_out = resized.flip(-1), valid_out.flip(-1)
        if self.standardize_depth_maps:
            resized = standardize_depth(resized, self.depth_trim_fraction, valid_mask=valid_out)
        resized = torch.where(valid_out, resized, torch.zeros_like(resized))
        return resized[0], valid_out[0, 0]

    def _segmentation(self, labels: np.ndarray, box, flip: bool, field: ModalityField) -> torch.Tensor:
        top, left, crop_h, crop_w = box
        crop = torch.from_numpy(labels[top : top + crop_h, left : left + crop_w].copy())[None, None].float()
        size = (self.image_size[0] // field.stride_level, self.image_size[1] // field.stride_level)
        resized = F.interpolate(crop, size=size, mode="nearest")[0, 0].long()
        if flip:
            resized = resized.flip(-1)
        if field.num_classes is not None:
            bad = (resized != field.ignore_index) & ((resized < 0) | (resized >= field.num_classes))
            if bad.any():
                raise ValueError(
                    f"Segmentation modality {field.name!r} holds labels {sorted(set(resized[bad].tolist()))[:10]} "
                    f"outside [0, {field.num_classes}) that are not the ignore index {field.ignore_index}: remap them "
                    "(e.g. to the ignore index) or build the model with more classes."
                )
        return resized


# ---- collator ---------------------------------------------------------------------------------------------------


class MultiModalCollator:
    """Stacks transformed samples and adds per-modality masks.

    Args:
        mask_generator: `(num_tokens: {name: N}) -> callable(batch_size, generator=None) -> {name: (B, N) bool}`
            factory, e.g. `MultiMAEForPreTraining.mask_generator`; None adds no masks (the model samples them).
        patch_size: Full-resolution patch size (tokens per modality = (H/p) * (W/p)).
        input_modalities: Modalities the encoder takes (masks are drawn over those present in the batch); the
            others present in the samples are passed as `targets`.
        stride_levels: Resolution divisor per modality (e.g. {"semseg": 4}), to count its tokens.
        seed: Seed of the mask randomness in the main process.

    Returns (for B samples): `{"modalities": {name: (B, ...)}, "targets": {name: (B, ...)}, "valid_masks":
    {name: (B, H, W) bool}, "bool_masked_pos": {name: (B, N) bool}}`.
    """

    def __init__(
        self,
        mask_generator: Callable[[dict[str, int]], Callable[..., dict[str, torch.Tensor]]] | None = None,
        patch_size: int = 16,
        input_modalities: Sequence[str] | None = None,
        stride_levels: Mapping[str, int] | None = None,
        seed: int | None = None,
    ) -> None:
        self.mask_generator = mask_generator
        self.stride_levels = dict(stride_levels or {})
        self.patch_size = patch_size
        self.input_modalities = list(input_modalities) if input_modalities is not None else None
        self.rng = SeededRandomness(seed)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not examples:
            raise ValueError("The collator got an empty list of examples (batch size 0).")
        names = list(examples[0]["modalities"])
        for example in examples:
            if list(example["modalities"]) != names:
                raise ValueError(
                    f"Every sample of a batch needs the same modalities; got {names} and {list(example['modalities'])}."
                )
        stacked = {name: torch.stack([example["modalities"][name] for example in examples]) for name in names}
        inputs = {
            name: value
            for name, value in stacked.items()
            if self.input_modalities is None or name in self.input_modalities
        }
        batch: dict[str, Any] = {"modalities": inputs}
        targets = {name: value for name, value in stacked.items() if name not in inputs}
        if targets:
            batch["targets"] = targets
        valid_names = list(examples[0].get("valid_masks", {}))
        if valid_names:
            batch["valid_masks"] = {
                name: torch.stack([example["valid_masks"][name] for example in examples]) for name in valid_names
            }
        if self.mask_generator is not None and inputs:
            name, value = next(iter(inputs.items()))
            stride = self.stride_levels.get(name, 1)
            height, width = value.shape[-2] * stride, value.shape[-1] * stride
            num_tokens = (height // self.patch_size) * (width // self.patch_size)
            sizes = dict.fromkeys(inputs, num_tokens)
            batch["bool_masked_pos"] = self.mask_generator(sizes)(len(examples), generator=self.rng.generator())
        return batch


# ---- datasets ---------------------------------------------------------------------------------------------------


def load_multimodal_folder(root: str | os.PathLike, modalities: Sequence[str] | None = None) -> Dataset:
    """A dataset from `root/<modality>/<stem>.<ext>` files: one column per modality holding file paths.

    Args:
        root: Folder with one sub-folder per modality (e.g. `rgb/`, `depth/`, `semseg/`).
        modalities: Sub-folders to read (default: all of them).

    Returns:
        `Dataset` with a `stem` column and one path column per modality, rows sorted by stem. Every stem must exist
        in every modality folder (else a ValueError lists the unmatched stems).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder (expected one sub-folder per modality).")
    names = list(modalities) if modalities is not None else sorted(p.name for p in root.iterdir() if p.is_dir())
    if not names:
        raise ValueError(f"{root} has no modality sub-folders.")
    files: dict[str, dict[str, str]] = {}
    for name in names:
        folder = root / name
        if not folder.is_dir():
            raise FileNotFoundError(f"Modality folder {folder} is missing.")
        by_stem = {}
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in _IMAGE_SUFFIXES:
                if path.stem in by_stem:
                    raise ValueError(f"Two files share the stem {path.stem!r} in {folder}.")
                by_stem[path.stem] = str(path)
        files[name] = by_stem
    all_stems = set().union(*(set(by_stem) for by_stem in files.values()))
    unmatched = {
        name: sorted(all_stems - set(by_stem))[:10] for name, by_stem in files.items() if all_stems - set(by_stem)
    }
    if unmatched:
        raise ValueError(f"File stems must match across modality folders; missing per folder: {unmatched}.")
    if not all_stems:
        raise ValueError(f"No image files under {root}.")
    stems = sorted(all_stems)
    return Dataset.from_dict({"stem": stems, **{name: [files[name][stem] for stem in stems] for name in names}})


def load_single_modality_folder(root: str | os.PathLike, name: str = "rgb") -> Dataset:
    """A one-modality dataset from a plain image folder (flat, or with one sub-folder per class as CIFAR/ImageNet).

    For RGB-only pre-training (MultiMAE without depth or semantic maps): every image file below `root` (hidden
    folders skipped) becomes a row; class sub-folders are not labels here, only places to look.

    Args:
        root: The image folder.
        name: Modality (column) name of the images.

    Returns:
        `Dataset` with a `stem` column (path relative to `root`, without suffix) and a `name` column of file paths,
        rows sorted by stem.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of images.")
    paths = sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.suffix.lower() in _IMAGE_SUFFIXES
        and path.suffix.lower() != ".npy"
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )
    if not paths:
        raise ValueError(f"No image files under {root}.")
    stems = [str(path.relative_to(root).with_suffix("")) for path in paths]
    return Dataset.from_dict({"stem": stems, name: [str(path) for path in paths]})


def attach_multimodal_transform(dataset: Dataset, transform: MultiModalTransform) -> Dataset:
    """Applies `transform` lazily (`set_transform`); use with `remove_unused_columns=False`."""

    def apply(batch: dict[str, list]) -> dict[str, list]:
        size = len(next(iter(batch.values())))
        rows = [{key: values[index] for key, values in batch.items()} for index in range(size)]
        outputs = [transform(row) for row in rows]
        return {"modalities": [o["modalities"] for o in outputs], "valid_masks": [o["valid_masks"] for o in outputs]}

    dataset.set_transform(apply)
    return dataset


__all__ = [
    "MODALITY_KINDS",
    "ModalityField",
    "MultiModalCollator",
    "MultiModalTransform",
    "attach_multimodal_transform",
    "fields_from_config",
    "load_multimodal_folder",
    "load_single_modality_folder",
    "read_depth",
    "read_segmentation",
]
