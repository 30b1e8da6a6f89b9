# Copyright 2026 The hf_unified_pretrain Authors. Licensed under the Apache License, Version 2.0.
"""M3I configuration: one backbone, four mutual-information objectives (dense intra-/inter-view, category, text)."""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from ..config_checks import check_preset_overrides
from ..internimage.configuration_internimage import INTERNIMAGE_PRESETS

LOSS_PARTS = ("intra_view", "inter_view", "classification", "image_text")

# Presets: "internimage-h" (the backbone of the paper's headline model; M3I's predictor/head sizes were never
# published, so the other fields keep this config's defaults), "tiny" (tests, CPU runs; InternImage tiny at 64 px)
# and "tiny-vit" (MVP's ViT as the backbone).
M3I_PRESETS: dict[str, dict[str, Any]] = {
    "internimage-h": {
        "backbone_config": {"model_type": "internimage", **INTERNIMAGE_PRESETS["internimage-h"], "image_size": 224},
        "image_size": 224,
    },
    "tiny": {
        "backbone_config": {
            "model_type": "internimage",
            "channels": 16,
            "depths": [1, 1, 2, 1],
            "groups": [1, 2, 4, 8],
            "image_size": 64,
            "drop_path_rate": 0.0,
        },
        "image_size": 64,
        "decoder_hidden_size": 32,
        "decoder_num_layers": 1,
        "decoder_num_attention_heads": 4,
        "num_masking_patches": 1,
        "projection_dim": 16,
        "text_hidden_size": 32,
        "num_labels": 5,
    },
    "tiny-vit": {
        "backbone_config": {
            "model_type": "mvp_vision",
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "mlp_ratio": 2.0,
            "image_size": 32,
            "patch_size": 8,
            "drop_path_rate": 0.0,
            "teacher_dim": 24,
        },
        "image_size": 32,
        "decoder_hidden_size": 32,
        "decoder_num_layers": 1,
        "decoder_num_attention_heads": 4,
        "num_masking_patches": 6,
        "projection_dim": 16,
        "text_hidden_size": 32,
        "num_labels": 5,
    },
}


def backbone_feature_stride(backbone_config: PreTrainedConfig, stage: str) -> int:
    """Pixels per cell of the backbone's `stage` map: InternImage stages at strides 4/8/16/32, ViTs at `patch_size`."""
    if backbone_config.model_type == "internimage":
        index = backbone_config.stage_names.index(stage)
        return 4 * 2 ** max(index - 1, 0)
    patch_size = getattr(backbone_config, "patch_size", None)
    if isinstance(patch_size, int):
        return patch_size
    raise ValueError(
        f"Cannot tell the stride of stage {stage!r} of a {backbone_config.model_type!r} backbone: set "
        "M3IConfig.feature_stride to its pixels per feature cell."
    )


@strict
class M3IConfig(PreTrainedConfig):
    r"""Configuration of M3I pre-training (Su et al., "Towards All-in-one Pre-training via Maximizing Multi-modal
    Mutual Information", CVPR 2023) around any registered backbone that returns dense feature maps.

    Args:
        backbone_config: The backbone's config (a dict with `model_type`, or a config); InternImage by default.
            Any backbone registered with `AutoBackbone` whose `feature_stage` map is dense works (MVP's ViT too).
        feature_stage: The backbone stage whose map is the dense representation (default: the last stage).
        feature_stride: Pixels per cell of that map (derived for InternImage and ViTs when None).
        image_size: Pre-training input size (square).
        decoder_hidden_size: Width of the projector output and of the predictor.
        decoder_num_layers: Predictor blocks (pre-norm transformer blocks over context tokens and queries).
        decoder_num_attention_heads: Heads of the predictor blocks.
        decoder_mlp_ratio: MLP width ratio of the predictor blocks.
        num_masking_patches: Feature cells masked (block-wise) in the student's input for the dense terms.
        mask_min_block_tokens: Smallest mask block in cells.
        neg_weight: Weight of the UniGrad negative term (SiameseIM: 0.02).
        normalize_predictions: LayerNorm (no affine) the predicted tokens as well as the targets in the dense loss
            (SiameseIM's `--online_ln`; off in its released recipe, so off by default).
        ema_momentum / ema_end_momentum / ema_schedule: EMA target encoder momentum, cosine schedule to 1 as
            SiameseIM (0.995 → 1).
        intra_view_loss_weight: Dense prediction of the EMA features of the same (unmasked) view at masked cells.
        inter_view_loss_weight: Dense prediction of the EMA features of the other view, the predictor's queries
            carrying that view's relative geometry (offset, scale, flip).
        classification_loss_weight: Cross-entropy of the category head with (mixed) labels.
        classifier_hidden_ratio: Category head: per-token linear expansion to this multiple of the backbone width
            + BatchNorm + GELU, mean over tokens, linear classifier (InternImage's head, `cls_scale` 1.5); 0 = a
            linear layer on the mean of the tokens.
        image_text_loss_weight: CLIP-style contrast of pooled image features with a frozen text encoder's features
            (trainable projections on both sides, negatives gathered across processes).
            A weight of 0 switches the term off (no head is built and no input is needed for it).
        projection_dim: Joint image-text embedding width.
        text_hidden_size: Feature width of the frozen text encoder.
        logit_scale_init_value: Initial log of the contrastive logit scale (CLIP: log(1 / 0.07)).
        num_labels: Categories of the classification term.
        layer_norm_eps / initializer_range: As usual.
    """

    model_type = "m3i"
    sub_configs_defaults = {
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="internimage", init_kwargs={}),
    }

    backbone_config: dict | PreTrainedConfig | None = None
    feature_stage: str | None = None
    feature_stride: int | None = None
    image_size: int = 224
    num_channels: int = 3
    decoder_hidden_size: int = 512
    decoder_num_layers: int = 4
    decoder_num_attention_heads: int = 16
    decoder_mlp_ratio: float | int = 4.0
    num_masking_patches: int = 10
    mask_min_block_tokens: int = 1
    neg_weight: float | int = 0.02
    normalize_predictions: bool = False
    ema_momentum: float | int = 0.995
    ema_end_momentum: float | int = 1.0
    ema_schedule: str = "cosine"
    intra_view_loss_weight: float | int = 1.0
    inter_view_loss_weight: float | int = 1.0
    classification_loss_weight: float | int = 1.0
    image_text_loss_weight: float | int = 1.0
    classifier_hidden_ratio: float | int = 1.5
    projection_dim: int = 512
    text_hidden_size: int = 768
    logit_scale_init_value: float | int = 2.6592
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.feature_stage is None:
            self.feature_stage = self.backbone_config.stage_names[-1]
        if self.feature_stage not in self.backbone_config.stage_names:
            raise ValueError(
                f"M3IConfig.feature_stage {self.feature_stage!r} is not a stage of the "
                f"{self.backbone_config.model_type!r} backbone: choose one of {self.backbone_config.stage_names}."
            )
        # the backbone returns exactly the dense map M3I uses (the model builds it from this very sub-config)
        self.backbone_config.out_features = [self.feature_stage]
        if hasattr(self.backbone_config, "reshape_hidden_states"):
            self.backbone_config.reshape_hidden_states = True
        if self.feature_stride is None:
            self.feature_stride = backbone_feature_stride(self.backbone_config, self.feature_stage)
        if self.image_size % self.feature_stride:
            raise ValueError(
                f"M3IConfig.image_size {self.image_size} must be a multiple of the feature stride {self.feature_stride}."
            )
        if self.decoder_hidden_size % self.decoder_num_attention_heads:
            raise ValueError("M3IConfig.decoder_hidden_size must be divisible by decoder_num_attention_heads.")
        for name in self.loss_weight_names():
            if getattr(self, name) < 0:
                raise ValueError(
                    f"M3IConfig.{name} must be >= 0 (0 switches the term off), got {getattr(self, name)}."
                )
        if not any(getattr(self, name) > 0 for name in self.loss_weight_names()):
            raise ValueError("M3IConfig: every loss weight is 0; switch at least one term on.")
        cells = (self.image_size // self.feature_stride) ** 2
        if not 0 <= self.num_masking_patches < cells:
            raise ValueError(
                f"M3IConfig.num_masking_patches must be in [0, {cells}) for a {self.image_size}px input at stride "
                f"{self.feature_stride}, got {self.num_masking_patches}."
            )
        if self.classifier_hidden_ratio < 0:
            raise ValueError(
                f"M3IConfig.classifier_hidden_ratio must be >= 0 (0 = a linear head), got {self.classifier_hidden_ratio}."
            )
        if self.ema_schedule not in ("constant", "cosine"):
            raise ValueError(f"M3IConfig.ema_schedule must be 'constant' or 'cosine', got {self.ema_schedule!r}.")

    @staticmethod
    def loss_weight_names() -> list[str]:
        return [f"{part}_loss_weight" for part in LOSS_PARTS]

    @property
    def loss_weights(self) -> dict[str, float]:
        """`{part: weight}` for the four terms (0 = off)."""
        return {part: float(getattr(self, f"{part}_loss_weight")) for part in LOSS_PARTS}

    @property
    def grid_size(self) -> tuple[int, int]:
        side = self.image_size // self.feature_stride
        return side, side

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> M3IConfig:
        """Builds a preset configuration (see `M3I_PRESETS`), with overrides."""
        if name not in M3I_PRESETS:
            raise ValueError(f"Unknown M3I preset {name!r}; choose one of {sorted(M3I_PRESETS)}.")
        check_preset_overrides(cls, overrides)
        return cls(**{**M3I_PRESETS[name], **overrides})


__all__ = ["M3I_PRESETS", "M3IConfig"]
