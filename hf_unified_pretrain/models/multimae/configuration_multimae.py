# Copyright 2026 The hf_unified_pretrain contributors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""MultiMAE configuration (Bachmann, Mizrahi, Atanov, Zamir: "MultiMAE: Multi-modal Multi-task Masked Autoencoders",
ECCV 2022).

The modalities are a typed list of `ModalitySpec`s stored as plain dicts (JSON round trip). Each spec says what a
modality is (an image, a depth map, a segmentation map), how many channels or classes it has, at which resolution it
is stored relative to the image (`stride_level`: semantic maps are kept at 1/4 resolution in the original, so their
patches are 4x4 instead of 16x16) and how it is scored when it is a pre-training output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.backbone_utils import BackboneConfigMixin

from ..config_checks import check_preset_overrides

MODALITY_KINDS = ("image", "depth", "segmentation")
LOSS_TYPES = ("mse", "l1", "cross_entropy")
_DEFAULT_LOSS = {"image": "mse", "depth": "l1", "segmentation": "cross_entropy"}
NORM_RGB = "norm_rgb"  # name of the extra decoder that predicts per-patch normalised RGB (MAE's norm_pix target)
COCO_PANOPTIC_SEMSEG_CLASSES = 133


@dataclass
class ModalitySpec:
    """One modality of a MultiMAE model.

    Args:
        name: Key of the modality in inputs, masks, predictions and losses (e.g. "rgb", "depth", "semseg").
        kind: "image" (float channels), "depth" (one float channel, any bit depth) or "segmentation" (class indices).
        num_channels: Channels of an image/depth modality (3 for RGB, 1 for depth).
        num_classes: Classes of a segmentation modality.
        stride_level: Resolution relative to the image: 1 = full, 4 = stored at 1/4 (the original's semseg).
        class_embed_dim: Width of the learned class embedding of a segmentation input (64 in the original).
        loss: Pre-training loss when the modality is an output: "mse", "l1" or "cross_entropy" (default by kind).
        ignore_index: Segmentation label that is never scored nor embedded (must not be a valid class).
    """

    name: str
    kind: str = "image"
    num_channels: int = 3
    num_classes: int = 0
    stride_level: int = 1
    class_embed_dim: int = 64
    loss: str | None = None
    ignore_index: int = 255

    def __post_init__(self) -> None:
        if self.kind not in MODALITY_KINDS:
            raise ValueError(f"Modality {self.name!r}: kind must be one of {MODALITY_KINDS}, got {self.kind!r}.")
        if self.kind == "depth" and self.num_channels != 1:
            raise ValueError(f"Depth modality {self.name!r} must have num_channels=1, got {self.num_channels}.")
        if self.kind == "segmentation":
            if self.num_classes < 1:
                raise ValueError(f"Segmentation modality {self.name!r} needs num_classes >= 1.")
            if 0 <= self.ignore_index < self.num_classes:
                raise ValueError(
                    f"Segmentation modality {self.name!r}: ignore_index={self.ignore_index} is a valid class "
                    f"(num_classes={self.num_classes}); choose an index outside [0, {self.num_classes}), e.g. -100 "
                    "or 65535 for maps with more than 255 classes."
                )
        elif self.num_channels < 1:
            raise ValueError(f"Modality {self.name!r} needs num_channels >= 1.")
        if self.stride_level < 1:
            raise ValueError(f"Modality {self.name!r}: stride_level must be >= 1, got {self.stride_level}.")
        self.loss = self.loss or _DEFAULT_LOSS[self.kind]
        if self.loss not in LOSS_TYPES:
            raise ValueError(f"Modality {self.name!r}: loss must be one of {LOSS_TYPES}, got {self.loss!r}.")
        if self.kind == "segmentation" and self.loss != "cross_entropy":
            raise ValueError(f"Segmentation modality {self.name!r} can only be scored with cross_entropy.")
        if self.kind != "segmentation" and self.loss == "cross_entropy":
            raise ValueError(f"Modality {self.name!r} of kind {self.kind!r} cannot be scored with cross_entropy.")

    @property
    def out_channels(self) -> int:
        """Channels a decoder predicts for this modality (classes for segmentation)."""
        return self.num_classes if self.kind == "segmentation" else self.num_channels

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_modalities(num_semseg_classes: int = COCO_PANOPTIC_SEMSEG_CLASSES) -> list[dict[str, Any]]:
    """The released model's modalities: RGB, (pseudo) depth, COCO semantic maps at 1/4 resolution."""
    return [
        ModalitySpec("rgb", "image", num_channels=3).to_dict(),
        ModalitySpec("depth", "depth", num_channels=1).to_dict(),
        ModalitySpec(
            "semseg", "segmentation", num_classes=num_semseg_classes, stride_level=4, class_embed_dim=64
        ).to_dict(),
    ]


MULTIMAE_PRESETS: dict[str, dict[str, Any]] = {
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16},
    "tiny": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
        "decoder_hidden_size": 16,
        "decoder_num_hidden_layers": 1,
        "decoder_num_attention_heads": 2,
        "num_visible_tokens": 12,
        "modalities": default_modalities(num_semseg_classes=5),
        "segmentation_head_embed_dim": 64,
        "segmentation_head_depth": 1,
    },
}


@strict
class MultiMAEConfig(BackboneConfigMixin, PreTrainedConfig):
    r"""Configuration of MultiMAE: a ViT over the tokens of several modalities, masked across modalities.

    Args:
        modalities: The modalities (list of `ModalitySpec` dicts; see `default_modalities`).
        input_modalities: Names the encoder can take (any non-empty subset may be given at run time).
        output_modalities: Names a pre-training decoder predicts.
        extra_norm_rgb_output: Add the original's 4th decoder "norm_rgb" predicting per-patch normalised RGB
            (MAE's norm_pix target) beside the raw RGB decoder.
        image_size: Full-resolution training size (int or (H, W)); position tables are built for it.
        patch_size: Patch side at full resolution (a stride-4 modality has `patch_size // 4` patches).
        hidden_size / num_hidden_layers / num_attention_heads / mlp_ratio / qkv_bias: the ViT encoder.
        hidden_act: MLP activation (exact GELU in the original).
        hidden_dropout_prob / attention_probs_dropout_prob / drop_path_rate: regularisation (all 0 in pre-training).
        layer_norm_eps: LayerNorm epsilon (1e-6).
        initializer_range: Std of the truncated-normal init of learned tokens.
        num_global_tokens: Learned tokens appended AFTER the patch tokens (the original puts them last).
        decoder_hidden_size / decoder_num_hidden_layers / decoder_num_attention_heads / decoder_mlp_ratio: each
            task's decoder: one cross-attention (queries = the task's own tokens, context = the visible encoder
            tokens) + MLP, then `decoder_num_hidden_layers` self-attention blocks (256 / 2 / 8 / 4 released).
        decoder_use_task_queries: Queries start from the task's own (visible or mask) tokens when the task is an
            input; otherwise from mask tokens + positions.
        decoder_use_cross_attention: The cross-attention + MLP step (True in the original).
        num_visible_tokens: Tokens the encoder sees per sample, summed over modalities (98 of 3x196 released).
        mask_ratio: Alternative to `num_visible_tokens` when that is None: masked fraction of all input tokens.
        dirichlet_alpha: Concentration of the Dirichlet split of the visible budget across modalities (one value or
            one per input modality).
        loss_on_unmasked: Score every token instead of the masked ones only.
        norm_pix_eps: Epsilon of the per-patch normalisation of the norm_rgb target.
        standardize_depth: Depth is standardised per image after trimming the lowest/highest `depth_trim_fraction`
            of values, as the original's training loop does before the model (applied by the image processor and
            the multi-modal collator, to inputs and targets alike; the model itself takes depth as given).
        depth_trim_fraction: Fraction trimmed at each end for the depth statistics (0.1).
        loss_weights: Weight per pre-training task (missing tasks weigh 1; the original sums unweighted).
        use_mean_pooling: Classifier pools by the mean of all tokens (global included) — the original's
            LinearOutputAdapter; otherwise the last global token.
        segmentation_head_*: The original's ConvNeXt semantic segmentation adapter: Linear(hidden*len(main) ->
            embed_dim), each patch reshaped to sqrt(preds_per_patch)^2 positions of embed_dim / preds_per_patch
            channels, `depth` ConvNeXt blocks, 1x1 conv, upsampling to the image size.
        head_modalities: Modalities whose tokens feed the segmentation head and the backbone feature maps
            (concatenated along channels, as the original's adapters do).
        backbone_feature_scales: Optional resampling factor per output stage (e.g. [4, 2, 1, 0.5] for strides
            4/8/16/32, parameter-free, like ViTDet's simple pyramid); None keeps every map at stride `patch_size`.
        reshape_hidden_states: Backbone maps as (B, C, h, w) (True) or raw tokens of the head modalities (False).
        semantic_loss_ignore_index: Label ignored by the segmentation fine-tuning loss.
        out_features / out_indices: Backbone stages ("stem", "stage1", ... one per block).
    """

    model_type = "multimae"

    modalities: list[dict] = field(default_factory=default_modalities)
    input_modalities: list[str] = field(default_factory=lambda: ["rgb", "depth", "semseg"])
    output_modalities: list[str] = field(default_factory=lambda: ["rgb", "depth", "semseg"])
    extra_norm_rgb_output: bool = True
    image_size: int | list[int] | tuple[int, int] = 224
    patch_size: int = 16
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mlp_ratio: float | int = 4.0
    qkv_bias: bool = True
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    drop_path_rate: float | int = 0.0
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    num_global_tokens: int = 1
    decoder_hidden_size: int = 256
    decoder_num_hidden_layers: int = 2
    decoder_num_attention_heads: int = 8
    decoder_mlp_ratio: float | int = 4.0
    decoder_use_task_queries: bool = True
    decoder_use_cross_attention: bool = True
    num_visible_tokens: int | None = 98
    mask_ratio: float | None = None
    dirichlet_alpha: float | int | list[float] = 1.0
    loss_on_unmasked: bool = False
    norm_pix_eps: float = 1e-6
    standardize_depth: bool = True
    depth_trim_fraction: float = 0.1
    loss_weights: dict[str, float] | None = None
    use_mean_pooling: bool = True
    segmentation_head_embed_dim: int = 6144
    segmentation_head_preds_per_patch: int = 16
    segmentation_head_depth: int = 4
    segmentation_head_layer_scale_init_value: float | int = 0.0
    segmentation_head_interpolate_mode: str = "bilinear"
    head_modalities: list[str] = field(default_factory=lambda: ["rgb"])
    backbone_feature_scales: list[float] | None = None
    reshape_hidden_states: bool = True
    semantic_loss_ignore_index: int = 255
    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None

    def __post_init__(self, **kwargs):
        if isinstance(self.image_size, (list, tuple)):
            self.image_size = [int(side) for side in self.image_size]
        self.modalities = [ModalitySpec(**spec).to_dict() for spec in self.modalities]
        self.input_modalities = list(self.input_modalities)
        self.output_modalities = list(self.output_modalities)
        self.head_modalities = list(self.head_modalities)
        self.stage_names = ["stem"] + [f"stage{index}" for index in range(1, self.num_hidden_layers + 1)]
        self.set_output_features_output_indices(
            out_indices=kwargs.pop("out_indices", None), out_features=kwargs.pop("out_features", None)
        )
        super().__post_init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> MultiMAEConfig:
        """Builds a preset ("base", "large" or "tiny"; see `MULTIMAE_PRESETS`) with overrides."""
        if name not in MULTIMAE_PRESETS:
            raise ValueError(f"Unknown MultiMAE preset {name!r}; choose one of {sorted(MULTIMAE_PRESETS)}.")
        check_preset_overrides(cls, overrides)
        return cls(**{**MULTIMAE_PRESETS[name], **overrides})

    # ---- derived views -------------------------------------------------------------------------------------------

    def modality(self, name: str) -> ModalitySpec:
        """The spec of modality `name` (KeyError naming the known ones otherwise)."""
        for spec in self.modalities:
            if spec["name"] == name:
                return ModalitySpec(**spec)
        raise KeyError(f"Unknown modality {name!r}; this model knows {[spec['name'] for spec in self.modalities]}.")

    @property
    def rgb_modality(self) -> str | None:
        """The first image modality among the inputs: what a bare `pixel_values` tensor is taken for."""
        for name in self.input_modalities:
            if self.modality(name).kind == "image":
                return name
        return None

    @property
    def decoder_tasks(self) -> dict[str, str]:
        """Pre-training decoders: decoder name -> the modality it predicts (norm_rgb predicts the RGB modality)."""
        tasks = {name: name for name in self.output_modalities}
        if self.extra_norm_rgb_output:
            tasks[NORM_RGB] = self.rgb_output_source
        return tasks

    @property
    def rgb_output_source(self) -> str:
        for spec in self.modalities:
            if spec["kind"] == "image" and spec["name"] in self.input_modalities + self.output_modalities:
                return spec["name"]
        return "rgb"

    @property
    def num_channels(self) -> int:
        """Channels of the image modality a bare `pixel_values` tensor is taken for (3 for RGB)."""
        name = self.rgb_modality
        return self.modality(name).num_channels if name is not None else 0

    @property
    def grid_size(self) -> tuple[int, int]:
        """(H/p, W/p) token grid of every modality at the configured image size."""
        height, width = _pair(self.image_size)
        return height // self.patch_size, width // self.patch_size

    def select_modalities(self, names: list[str]) -> MultiMAEConfig:
        """A copy of this config restricted to the modalities `names` (e.g. ["rgb"] for RGB-only data).

        Inputs, outputs, head modalities, per-modality Dirichlet concentrations and loss weights of the other
        modalities are dropped; the extra norm_rgb decoder stays only while an image modality does.
        """
        known = [spec["name"] for spec in self.modalities]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise ValueError(f"select_modalities needs a non-empty subset of {known}, got {list(names)}.")
        kept = [name for name in known if name in names]
        values = self.to_dict()
        values["modalities"] = [spec for spec in self.modalities if spec["name"] in kept]
        values["input_modalities"] = [name for name in self.input_modalities if name in kept]
        values["output_modalities"] = [name for name in self.output_modalities if name in kept]
        values["head_modalities"] = [name for name in self.head_modalities if name in values["input_modalities"]]
        if not values["head_modalities"] and values["input_modalities"]:
            values["head_modalities"] = values["input_modalities"][:1]
        if isinstance(self.dirichlet_alpha, list):
            by_name = dict(zip(self.input_modalities, self.dirichlet_alpha))
            values["dirichlet_alpha"] = [by_name[name] for name in values["input_modalities"]]
        values["extra_norm_rgb_output"] = self.extra_norm_rgb_output and any(
            spec["kind"] == "image" for spec in values["modalities"]
        )
        tasks = set(values["output_modalities"]) | ({NORM_RGB} if values["extra_norm_rgb_output"] else set())
        if self.loss_weights is not None:
            values["loss_weights"] = {task: weight for task, weight in self.loss_weights.items() if task in tasks}
        return type(self).from_dict(values)

    def modality_patch_size(self, name: str) -> int:
        """Patch side of a modality at its own resolution (16 for images, 4 for the 1/4-resolution semseg)."""
        return max(1, self.patch_size // self.modality(name).stride_level)

    def visible_budget(self, num_tokens: int) -> int:
        """Visible tokens per sample when `num_tokens` input tokens are given (all modalities together)."""
        if self.num_visible_tokens is not None:
            if not 0 < self.num_visible_tokens <= num_tokens:
                raise ValueError(
                    f"num_visible_tokens={self.num_visible_tokens} does not fit an input with {num_tokens} tokens "
                    "over the given modalities: lower it, or set it to None and use `mask_ratio`."
                )
            return self.num_visible_tokens
        return max(1, int(num_tokens * (1 - self.mask_ratio)))

    def alphas_for(self, names: list[str]) -> list[float]:
        """Dirichlet concentration for the given input modalities (in that order)."""
        if isinstance(self.dirichlet_alpha, (int, float)):
            return [float(self.dirichlet_alpha)] * len(names)
        by_name = dict(zip(self.input_modalities, self.dirichlet_alpha))
        return [float(by_name[name]) for name in names]

    def validate_multimae_architecture(self):
        """Part of `@strict` validation: shapes and names the model relies on."""
        names = [spec["name"] for spec in self.modalities]
        if len(set(names)) != len(names):
            raise ValueError(f"Modality names must be unique, got {names}.")
        if NORM_RGB in names:
            raise ValueError(f"{NORM_RGB!r} is the extra decoder's name; do not use it for a modality.")
        for field_name in ("input_modalities", "output_modalities", "head_modalities"):
            unknown = [name for name in getattr(self, field_name) if name not in names]
            if unknown:
                raise ValueError(f"{field_name} names unknown modalities {unknown}; the modalities are {names}.")
        if not self.input_modalities:
            raise ValueError("input_modalities must name at least one modality.")
        for name in self.head_modalities:
            if name not in self.input_modalities:
                raise ValueError(f"head_modalities must be input modalities; {name!r} is not.")
        if self.extra_norm_rgb_output and not any(spec["kind"] == "image" for spec in self.modalities):
            raise ValueError("extra_norm_rgb_output needs an image modality to normalise; set it to False.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if self.decoder_hidden_size % self.decoder_num_attention_heads:
            raise ValueError("decoder_hidden_size must be a multiple of decoder_num_attention_heads.")
        if self.hidden_size % 4 or self.decoder_hidden_size % 4:
            raise ValueError("hidden_size and decoder_hidden_size must be divisible by 4 (2-D sin-cos positions).")
        height, width = _pair(self.image_size)
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be divisible by patch_size {self.patch_size}.")
        for spec in self.modalities:
            if self.patch_size % spec["stride_level"]:
                raise ValueError(
                    f"patch_size {self.patch_size} must be divisible by the stride_level {spec['stride_level']} of "
                    f"modality {spec['name']!r}."
                )
        if self.num_visible_tokens is None and self.mask_ratio is None:
            raise ValueError("Set num_visible_tokens (visible budget over all modalities) or mask_ratio.")
        if self.mask_ratio is not None and not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in (0, 1), got {self.mask_ratio}.")
        if self.num_visible_tokens is not None and self.num_visible_tokens < 1:
            raise ValueError(f"num_visible_tokens must be >= 1, got {self.num_visible_tokens}.")
        if isinstance(self.dirichlet_alpha, list):
            if len(self.dirichlet_alpha) != len(self.input_modalities):
                raise ValueError("dirichlet_alpha as a list needs one value per input modality.")
            if any(alpha <= 0 for alpha in self.dirichlet_alpha):
                raise ValueError("dirichlet_alpha values must be > 0.")
        elif self.dirichlet_alpha <= 0:
            raise ValueError(f"dirichlet_alpha must be > 0, got {self.dirichlet_alpha}.")
        if not 0.0 <= self.depth_trim_fraction < 0.5:
            raise ValueError(f"depth_trim_fraction must lie in [0, 0.5), got {self.depth_trim_fraction}.")
        if self.num_global_tokens < 0:
            raise ValueError("num_global_tokens must be >= 0.")
        if self.loss_weights is not None:
            unknown = sorted(set(self.loss_weights) - set(self.decoder_tasks))
            if unknown:
                raise ValueError(
                    f"loss_weights names {unknown}, but the pre-training tasks are {list(self.decoder_tasks)}."
                )
        preds = self.segmentation_head_preds_per_patch
        if round(preds**0.5) ** 2 != preds or self.segmentation_head_embed_dim % preds:
            raise ValueError(
                "segmentation_head_preds_per_patch must be a square number dividing segmentation_head_embed_dim."
            )
        if self.backbone_feature_scales is not None and len(self.backbone_feature_scales) != len(self.out_features):
            raise ValueError("backbone_feature_scales needs one factor per out_features stage.")


def _pair(value: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


__all__ = ["MULTIMAE_PRESETS", "ModalitySpec", "MultiMAEConfig", "default_modalities"]
