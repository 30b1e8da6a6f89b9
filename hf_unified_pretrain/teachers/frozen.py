"""Frozen teachers around any Hugging Face model stored in a local folder: vision (`FrozenTeacher`) or text
(`FrozenTextTeacher`).

Feature-target methods (MVP, iTPN-CLIP, ...) regress a frozen network's patch tokens. The teacher sees the *same*
pixels as the student but with its *own* preprocessing: the student's normalisation is undone, the teacher's is
applied (read from the folder's `preprocessor_config.json`, else CLIP's), and the image is resized so the teacher's
patch grid matches the student's (e.g. CLIP-L/14 fed 196 px gives 14×14 tokens for a /16 student at 224).

Features (`feature=`):
- `"projected_patch_tokens"`: `visual_projection(post_layernorm(patch tokens))`, i.e. OpenAI CLIP's
  `ln_post(x) @ proj` on every patch token (needs a model with `visual_projection`, e.g.
  `CLIPVisionModelWithProjection`).
- `"patch_tokens"`: patch tokens after the model's final norm (CLIP's `post_layernorm`; ViT/DINOv2/SigLIP already
  return normalised tokens).
- `"last_hidden_state"`: the raw last encoder layer's patch tokens.
Prefix tokens (CLS, registers) are always dropped.

Feature-map teachers (convolutional networks such as AMDIM, ResNet or ConvNeXt: no `patch_size` in their config) see
the student's pixels at the student's resolution; `feature` names the output field holding a (B, C, h, w) map
(`"last_hidden_state"` by default, or e.g. AMDIM's `"local_features_7"`), which is average-pooled onto the student's
patch grid (`target_grid`, required) and returned as (B, h·w, C) tokens. A map smaller than the grid (a 1×1 global
feature) is repeated on every token.

`FrozenTextTeacher` runs a text encoder (BERT, a CLIP text tower, ...) on tokenised text (`input_ids`,
`attention_mask`) for image-text objectives; several teachers can be attached at once in named slots
(`set_teacher(teacher, name=...)`).

Teachers are loaded with safetensors only and never from the Hub; they are never saved with the student (attach them
with `TeacherHolderMixin.set_teacher`), the student's config only records their paths.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import AutoConfig
from transformers.utils.constants import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
)

TEACHER_FEATURES = ("projected_patch_tokens", "last_hidden_state", "patch_tokens")
TEXT_TEACHER_FEATURES = ("pooler_output", "text_embeds", "last_hidden_state")

# Model types whose `last_hidden_state` is taken *before* the final `post_layernorm` (it is only applied to the
# pooled CLS token), so "patch_tokens" must apply it explicitly. SigLIP, ViT, DINOv2 already normalise it.
_POST_NORM_OUTSIDE_LAST_HIDDEN_STATE = {"clip", "clip_vision_model"}


def _as_pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"Expected an int or a (height, width) pair, got {value!r}.")
    return pair


def _check_teacher_folder(path: Path) -> None:
    has_weights = (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()
    if not path.is_dir() or not (path / "config.json").is_file() or not has_weights:
        found = sorted(p.name for p in path.iterdir()) if path.is_dir() else "folder does not exist"
        raise FileNotFoundError(
            f"Teacher folder {str(path)!r} is not usable ({found}; a `save_pretrained` folder is expected): pass a "
            "local folder containing config.json and model.safetensors; the Hub is not used."
        )


def _read_teacher_normalisation(path: Path) -> tuple[list[float], list[float]]:
    """The teacher's mean/std from `preprocessor_config.json`, else OpenAI CLIP's."""
    processor_file = path / "preprocessor_config.json"
    if not processor_file.is_file():
        return list(OPENAI_CLIP_MEAN), list(OPENAI_CLIP_STD)
    processor = json.loads(processor_file.read_text())
    if processor.get("do_normalize", True) is False:
        return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    return list(processor.get("image_mean", OPENAI_CLIP_MEAN)), list(processor.get("image_std", OPENAI_CLIP_STD))


def _is_patch_model(config) -> bool:
    """Vision transformers carry `patch_size` and `image_size`; feature-map (convolutional) models do not."""
    return getattr(config, "patch_size", None) is not None and getattr(config, "image_size", None) is not None


def _is_text_config(config) -> bool:
    return getattr(config, "vocab_size", None) is not None and getattr(config, "num_channels", None) is None


def _resolve_model_class(model_class: str | type) -> type:
    if not isinstance(model_class, str):
        return model_class
    resolved = getattr(transformers, model_class, None)
    if resolved is None:
        raise ValueError(f"`model_class={model_class!r}` is not a class exported by transformers.")
    return resolved


class FrozenTeacher(nn.Module):
    """A frozen HF vision model returning per-patch target features for the student's pixels.

    Build it with `FrozenTeacher.from_pretrained(path, ...)`; the constructor takes an already loaded model.

    Args:
        model: a transformers vision model (or a dual-encoder with a `vision_model` attribute, e.g. `CLIPModel`).
        feature: one of `TEACHER_FEATURES` (see the module docstring); for a feature-map model, the output field
            holding its (B, C, h, w) map (e.g. "last_hidden_state").
        target_grid: teacher patch grid (int or (h, w)) to resize inputs to; None keeps the input resolution. For a
            feature-map model (required): the grid its map is average-pooled to (the student's patch grid).
        input_mean / input_std: the normalisation of the student's `pixel_values` (undone before the teacher's).
        teacher_mean / teacher_std: the teacher's own normalisation.
        resize_mode: `F.interpolate` mode for resizing to the target grid.
    """

    def __init__(
        self,
        model: nn.Module,
        feature: str = "projected_patch_tokens",
        target_grid: int | Sequence[int] | None = None,
        input_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        input_std: Sequence[float] = IMAGENET_DEFAULT_STD,
        teacher_mean: Sequence[float] = OPENAI_CLIP_MEAN,
        teacher_std: Sequence[float] = OPENAI_CLIP_STD,
        resize_mode: str = "bicubic",
    ) -> None:
        super().__init__()
        self.model = model
        vision_config = self.vision_tower.config
        self.is_feature_map_model = not _is_patch_model(vision_config)
        if self.is_feature_map_model:
            if _is_text_config(vision_config):
                raise ValueError(
                    f"{type(model).__name__} (model_type {getattr(vision_config, 'model_type', '?')!r}) is a text "
                    "model: a FrozenTeacher needs a vision model (load text encoders with FrozenTextTeacher)."
                )
            if target_grid is None:
                raise ValueError(
                    f"{type(model).__name__} has no patch grid (no `patch_size` in its config): pass `target_grid`, "
                    "the student's patch grid, onto which its (B, C, h, w) feature map is average-pooled."
                )
            if feature in ("projected_patch_tokens", "patch_tokens"):
                raise ValueError(
                    f"feature={feature!r} needs a vision transformer; {type(model).__name__} returns feature maps: use "
                    "feature='last_hidden_state' or the name of another (B, C, h, w) output field."
                )
        elif feature not in TEACHER_FEATURES:
            raise ValueError(f"Unknown teacher feature {feature!r}; choose one of {list(TEACHER_FEATURES)}.")
        if feature == "projected_patch_tokens" and not hasattr(model, "visual_projection"):
            raise ValueError(
                f"feature='projected_patch_tokens' needs a model with a `visual_projection` (e.g. "
                f"CLIPVisionModelWithProjection); {type(model).__name__} has none: use feature='patch_tokens'."
            )
        self.feature = feature
        self.patch_size = None if self.is_feature_map_model else _as_pair(vision_config.patch_size)
        self.image_size = None if self.is_feature_map_model else _as_pair(vision_config.image_size)
        self.target_grid = _as_pair(target_grid) if target_grid is not None else None
        self._feature_dim: int | None = None
        self.resize_mode = resize_mode
        self._model_type = getattr(vision_config, "model_type", "")
        self._accepts_interpolate = (
            "interpolate_pos_encoding" in inspect.signature(self.vision_tower.forward).parameters
        )

        # x_teacher = (x_student * input_std + input_mean - teacher_mean) / teacher_std = x_student * scale + shift
        input_mean, input_std = torch.tensor(input_mean), torch.tensor(input_std)
        teacher_mean, teacher_std = torch.tensor(teacher_mean), torch.tensor(teacher_std)
        scale = input_std / teacher_std
        shift = (input_mean - teacher_mean) / teacher_std
        self.register_buffer("pixel_scale", scale.view(1, -1, 1, 1).float(), persistent=False)
        self.register_buffer("pixel_shift", shift.view(1, -1, 1, 1).float(), persistent=False)

        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        model_class: str | type = "CLIPVisionModelWithProjection",
        feature: str = "projected_patch_tokens",
        target_grid: int | Sequence[int] | None = None,
        input_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        input_std: Sequence[float] = IMAGENET_DEFAULT_STD,
        teacher_mean: Sequence[float] | None = None,
        teacher_std: Sequence[float] | None = None,
        resize_mode: str = "bicubic",
        dtype: torch.dtype | None = None,
    ) -> FrozenTeacher:
        """Loads a teacher from a local `save_pretrained` folder (safetensors only, never the Hub).

        Args:
            path: folder with config.json + model.safetensors (+ optional preprocessor_config.json).
            model_class: a transformers class or its name (`"CLIPVisionModelWithProjection"`, `"AutoModel"`, ...).
            teacher_mean / teacher_std: override the folder's normalisation.
            dtype: load dtype (defaults to float32; teachers are moved to the input dtype when run).
            Other arguments: see the class docstring.
        """
        path = Path(path)
        _check_teacher_folder(path)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        vision_config = getattr(config, "vision_config", None) or config
        if _is_text_config(vision_config):
            raise ValueError(
                f"Teacher folder {str(path)!r} holds a {config.model_type!r} text config: it is not a vision model. "
                "Pass the folder of a vision model such as CLIPVisionModelWithProjection, or load a text encoder with "
                "FrozenTextTeacher."
            )
        if _is_patch_model(vision_config) and feature not in TEACHER_FEATURES:
            raise ValueError(f"Unknown teacher feature {feature!r}; choose one of {list(TEACHER_FEATURES)}.")
        model_class = _resolve_model_class(model_class)
        load_kwargs = {"local_files_only": True, "use_safetensors": True, "dtype": dtype or torch.float32}
        if vision_config is not config and getattr(model_class, "config_class", None) is type(vision_config):
            # A dual-encoder folder (e.g. a full CLIP) loaded into its vision-only class: the projection width lives
            # on the outer config, the vision sub-config would default it (CLIP: 512) and mismatch the weights.
            vision_config = copy.deepcopy(vision_config)
            if getattr(config, "projection_dim", None) is not None and hasattr(vision_config, "projection_dim"):
                vision_config.projection_dim = config.projection_dim
            load_kwargs["config"] = vision_config
        model = model_class.from_pretrained(path, **load_kwargs)
        mean, std = _read_teacher_normalisation(path)
        return cls(
            model,
            feature=feature,
            target_grid=target_grid,
            input_mean=input_mean,
            input_std=input_std,
            teacher_mean=teacher_mean if teacher_mean is not None else mean,
            teacher_std=teacher_std if teacher_std is not None else std,
            resize_mode=resize_mode,
        )

    @property
    def vision_tower(self) -> nn.Module:
        """The image encoder: `model.vision_model` for CLIP-style models, else the model itself."""
        return getattr(self.model, "vision_model", self.model)

    @property
    def feature_dim(self) -> int:
        """Channel count D of the returned features."""
        if self.feature == "projected_patch_tokens":
            return self.model.visual_projection.out_features
        if not self.is_feature_map_model:
            return self.vision_tower.config.hidden_size
        if self._feature_dim is None:
            # Feature-map configs name their width differently (hidden_sizes, n_rkhs, ...): read it off one forward.
            self._feature_dim = self._probe_feature_dim()
        return self._feature_dim

    def _probe_feature_dim(self) -> int:
        config = self.vision_tower.config
        size = getattr(config, "image_size", None) or 224
        height, width = _as_pair(size)
        parameter = next(self.model.parameters())
        pixels = torch.zeros(1, getattr(config, "num_channels", 3), height, width, dtype=parameter.dtype)
        with torch.no_grad():
            return self._feature_map(pixels.to(parameter.device)).shape[1]

    @property
    def grid_size(self) -> tuple[int, int]:
        """Teacher patch grid (h, w): `target_grid` when set, else the model's native grid."""
        if self.target_grid is not None:
            return self.target_grid
        return self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1]

    def _feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        """The (B, C, h, w) output field `feature` of a feature-map teacher."""
        outputs = self.vision_tower(pixel_values=pixels)
        features = getattr(outputs, self.feature, None)
        if features is None and isinstance(outputs, dict):
            features = outputs.get(self.feature)
        if not isinstance(features, torch.Tensor) or features.ndim != 4:
            found = getattr(features, "shape", None)
            raise ValueError(
                f"Teacher feature {self.feature!r} of {type(self.vision_tower).__name__} must be a (B, C, h, w) map "
                f"(got {tuple(found) if found is not None else type(features).__name__}); pick an output field "
                "holding a feature map, e.g. 'last_hidden_state'."
            )
        return features

    def train(self, mode: bool = True) -> FrozenTeacher:
        """A frozen teacher stays in eval mode (no dropout, fixed norms) whatever `mode` says."""
        return super().train(False)

    def prepare_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Student pixels (B, C, H, W) → the teacher's normalisation and, with `target_grid`, its input size."""
        scale = self.pixel_scale.to(device=pixel_values.device, dtype=pixel_values.dtype)
        shift = self.pixel_shift.to(device=pixel_values.device, dtype=pixel_values.dtype)
        return self._resize(pixel_values * scale + shift)

    def _resize(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.target_grid is None or self.is_feature_map_model:
            return pixel_values
        size = (self.target_grid[0] * self.patch_size[0], self.target_grid[1] * self.patch_size[1])
        if tuple(pixel_values.shape[-2:]) == size:
            return pixel_values
        align = False if self.resize_mode in ("bilinear", "bicubic") else None
        return F.interpolate(pixel_values, size=size, mode=self.resize_mode, align_corners=align)

    @torch.no_grad()
    def forward(
        self, pixel_values: torch.Tensor | None = None, teacher_pixel_values: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher features for a batch.

        Args:
            pixel_values: (B, C, H, W) pixels normalised for the *student* (`input_mean/std`).
            teacher_pixel_values: (B, C, H', W') pixels already normalised for the teacher; used instead of
                `pixel_values` when given (only resized, if `target_grid` asks for another size).

        Returns:
            (B, N, D) patch-token features, N = h·w of the teacher grid, row-major, prefix tokens dropped (for a
            feature-map model: its map pooled to `target_grid`).
        """
        if teacher_pixel_values is not None:
            pixels = self._resize(teacher_pixel_values)
        elif pixel_values is not None:
            pixels = self.prepare_pixels(pixel_values)
        else:
            raise ValueError("FrozenTeacher needs `pixel_values` or `teacher_pixel_values`.")
        if self.is_feature_map_model:
            features = F.adaptive_avg_pool2d(self._feature_map(pixels), self.target_grid)
            return features.flatten(2).transpose(1, 2)
        height, width = pixels.shape[-2:]
        if height % self.patch_size[0] or width % self.patch_size[1]:
            raise ValueError(
                f"Teacher input {height}x{width} is not divisible by its patch size {self.patch_size}: pass "
                "`target_grid` so inputs are resized to a multiple of the patch size."
            )
        num_patches = (height // self.patch_size[0]) * (width // self.patch_size[1])

        kwargs = {}
        if self._accepts_interpolate:
            kwargs["interpolate_pos_encoding"] = (height, width) != self.image_size
        tokens = self.vision_tower(pixel_values=pixels, **kwargs).last_hidden_state
        num_prefix = tokens.shape[1] - num_patches
        if num_prefix < 0:
            raise ValueError(f"Teacher returned {tokens.shape[1]} tokens for a grid of {num_patches} patches.")
        tokens = tokens[:, num_prefix:]
        if self.feature == "last_hidden_state":
            return tokens
        if self._model_type in _POST_NORM_OUTSIDE_LAST_HIDDEN_STATE:
            tokens = self.vision_tower.post_layernorm(tokens)
        if self.feature == "patch_tokens":
            return tokens
        return self.model.visual_projection(tokens)


class FrozenTextTeacher(nn.Module):
    """A frozen HF text encoder returning features of tokenised text (for image-text objectives).

    Build it with `FrozenTextTeacher.from_pretrained(path, ...)`; the constructor takes an already loaded model.

    Args:
        model: a transformers text model, e.g. `BertModel`, `CLIPTextModel`, `CLIPTextModelWithProjection`.
        feature: which output to return: `"pooler_output"` (B, D) (BERT's pooled [CLS], CLIP's end-of-text token),
            `"text_embeds"` (B, D') (the projected embedding of `*WithProjection` models) or `"last_hidden_state"`
            (B, L, D) token features.
    """

    def __init__(self, model: nn.Module, feature: str = "pooler_output") -> None:
        super().__init__()
        if feature not in TEXT_TEACHER_FEATURES:
            raise ValueError(f"Unknown text teacher feature {feature!r}; choose one of {list(TEXT_TEACHER_FEATURES)}.")
        if feature == "text_embeds" and not hasattr(model, "text_projection"):
            raise ValueError(
                f"feature='text_embeds' needs a model with a `text_projection` (e.g. CLIPTextModelWithProjection); "
                f"{type(model).__name__} has none: use feature='pooler_output'."
            )
        self.model = model
        self.feature = feature
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        model_class: str | type = "AutoModel",
        feature: str = "pooler_output",
        dtype: torch.dtype | None = None,
    ) -> FrozenTextTeacher:
        """Loads a text teacher from a local `save_pretrained` folder (safetensors only, never the Hub).

        Args:
            path: folder with config.json + model.safetensors.
            model_class: a transformers class or its name (`"AutoModel"`, `"CLIPTextModelWithProjection"`, ...).
            feature: see the class docstring.
            dtype: load dtype (defaults to float32).
        """
        path = Path(path)
        _check_teacher_folder(path)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        text_config = getattr(config, "text_config", None) or config
        if getattr(text_config, "vocab_size", None) is None:
            raise ValueError(
                f"Teacher folder {str(path)!r} holds a {config.model_type!r} config without a vocabulary: it is not a "
                "text model. Load vision models with FrozenTeacher."
            )
        model_class = _resolve_model_class(model_class)
        model = model_class.from_pretrained(
            path, local_files_only=True, use_safetensors=True, dtype=dtype or torch.float32
        )
        return cls(model, feature=feature)

    @property
    def feature_dim(self) -> int:
        """Channel count D of the returned features."""
        if self.feature == "text_embeds":
            return self.model.text_projection.out_features
        return self.model.config.hidden_size

    def train(self, mode: bool = True) -> FrozenTextTeacher:
        """A frozen teacher stays in eval mode whatever `mode` says."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Text features for a batch.

        Args:
            input_ids: (B, L) token ids from the teacher's tokenizer.
            attention_mask: optional (B, L), 1 for real tokens and 0 for padding.

        Returns:
            (B, D) for `"pooler_output"` / `"text_embeds"`, (B, L, D) for `"last_hidden_state"`.
        """
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask)
        features = getattr(outputs, self.feature, None)
        if features is None:
            raise ValueError(
                f"{type(self.model).__name__} returned no {self.feature!r}; pick another `feature` among "
                f"{list(TEXT_TEACHER_FEATURES)} (e.g. a BertModel built without its pooling layer has no pooler_output)."
            )
        return features
