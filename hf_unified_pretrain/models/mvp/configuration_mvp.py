"""MVP configuration: a BEiT-style ViT student taught by the patch tokens of a frozen CLIP vision tower."""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.backbone_utils import BackboneConfigMixin

from ..config_checks import check_field_ranges, check_preset_overrides
from ..masking_config import MaskingConfigMixin

_LOSS_TYPES = ("cosine", "smooth_l1", "mse", "l1")

# Presets of the paper (ViT-B/16 and ViT-L/16 at 224 px, both taught by CLIP ViT-B/16 whose projected tokens are
# 512-d) plus a tiny configuration for tests and smoke runs. Layer-scale follows BEiT: 0.1 for base, 1e-5 for large.
MVP_PRESETS: dict[str, dict[str, Any]] = {
    "base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "mlp_ratio": 4.0,
        "layer_scale_init_value": 0.1,
        "drop_path_rate": 0.1,
        "teacher_dim": 512,
    },
    "large": {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "mlp_ratio": 4.0,
        "layer_scale_init_value": 1e-5,
        "drop_path_rate": 0.1,
        "teacher_dim": 512,
    },
    "tiny": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "mlp_ratio": 2.0,
        "image_size": 32,
        "patch_size": 8,
        "num_masking_patches": 6,
        "mask_min_block_tokens": 2,
        "drop_path_rate": 0.0,
        "teacher_dim": 24,
    },
}


@strict
class MVPConfig(MaskingConfigMixin, BackboneConfigMixin, PreTrainedConfig):
    r"""Configuration of MVP (Multimodality-guided Visual Pre-training, Wei et al., ECCV 2022).

    The student is a BEiT-style ViT (pre-norm blocks, [CLS] token, mask token, layer-scale, relative position bias
    shared across layers or per layer). During pre-training, block-wise masked patches predict the frozen CLIP vision
    tower's projected patch tokens through a LayerNorm → Linear head.

    Args:
        hidden_size: Width of the student.
        num_hidden_layers: Number of transformer blocks.
        num_attention_heads: Attention heads per block.
        mlp_ratio: Hidden width of the MLPs relative to `hidden_size` (BEiT: 4, i.e. `intermediate_size` 3072 at
            768); configs saved with `intermediate_size` still load.
        hidden_act: MLP activation.
        hidden_dropout_prob: Dropout after the attention and MLP branches.
        attention_probs_dropout_prob: Dropout on the attention probabilities.
        initializer_range: Std of the truncated-normal initialisation.
        layer_norm_eps: LayerNorm epsilon.
        image_size: Training resolution (int or (H, W)); sets the grid of the position tables. Other sizes divisible
            by `patch_size` run with `interpolate_pos_encoding=True` in the forward.
        patch_size: Patch side in pixels.
        num_channels: Input channels.
        qkv_bias: Biases on the query and value projections (as BEiT, the key projection never has one).
        use_mask_token: Learnable [MASK] embedding (needed for pre-training).
        use_absolute_position_embeddings: Learnable absolute position embeddings.
        interpolate_pos_encoding: Accept inputs of any size in every forward, as if `interpolate_pos_encoding=True`
            were passed: for callers that cannot pass it (heads such as DETR call the backbone with pixels only).
        interpolate_pos_encoding_on_load: When `from_pretrained` reads position tables saved for another image size
            (e.g. a 224 px checkpoint into a 384 px model), interpolate them to this config's grid (absolute
            embeddings bicubic, relative-position bias offsets bilinear, as the forward's `interpolate_pos_encoding`).
            With False such checkpoints fail to load with a size mismatch.
        use_relative_position_bias: A relative position bias table in every block.
        use_shared_relative_position_bias: One relative position bias table shared by all blocks (BEiT
            pre-training); may be combined with the per-block tables.
        layer_scale_init_value: Initial layer-scale value; 0 disables layer-scale.
        drop_path_rate: Stochastic depth rate of the last block (linearly increasing from 0).
        use_mean_pooling: Pool by a LayerNorm over the mean patch token (BEiT fine-tuning); otherwise a final
            LayerNorm is applied to all tokens and the [CLS] token is the pooled output.
        mask_ratio: Fraction of patches masked in pre-training, used when `num_masking_patches` is None (the count
            then follows the input resolution).
        num_masking_patches: Exact number of block-masked patches per image (75 of 196 at 224 px); wins over
            `mask_ratio` when set.
        mask_min_block_tokens: Smallest masked block area (BEiT: 16).
        mask_min_aspect: Smallest aspect ratio of a masked block.
        mask_max_aspect: Largest aspect ratio (default `1 / mask_min_aspect`).
        teacher_dim: Width of the teacher's target features (CLIP ViT-B/16 projection: 512).
        teacher_name_or_path: Local folder of the frozen teacher (a `CLIPVisionModelWithProjection`); recorded only.
        loss_type: Feature loss: "cosine" (1 − cosine similarity, default), "smooth_l1", "mse" or "l1".
        normalize_target: Normalise the targets with a LayerNorm without affine before the loss.
        smooth_l1_beta: Beta of the smooth-L1 loss.
        feature_loss_weight: Weight of the feature loss in the total `loss`.
        reshape_hidden_states: Backbone feature maps as (B, C, H/p, W/p) (True) or raw tokens (B, 1+N, C) (False,
            what DPT-style necks expect).
        out_features / out_indices: Backbone stages ("stem", "stage1", ..., one per block) to return.
    """

    model_type = "mvp_vision"  # "mvp" is taken by an in-tree transformers text model

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mlp_ratio: float | int = 4.0
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6
    image_size: int | list[int] | tuple[int, int] = 224
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    use_mask_token: bool = True
    use_absolute_position_embeddings: bool = False
    interpolate_pos_encoding: bool = False
    interpolate_pos_encoding_on_load: bool = True
    use_relative_position_bias: bool = False
    use_shared_relative_position_bias: bool = True
    layer_scale_init_value: float | int = 0.1
    drop_path_rate: float | int = 0.1
    use_mean_pooling: bool = True
    mask_ratio: float | None = None
    num_masking_patches: int | None = 75
    mask_min_block_tokens: int = 16
    mask_min_aspect: float = 0.3
    mask_max_aspect: float | None = None
    teacher_dim: int = 512
    teacher_name_or_path: str | None = None
    loss_type: str = "cosine"
    normalize_target: bool = False
    smooth_l1_beta: float = 1.0
    feature_loss_weight: float | int = 1.0
    reshape_hidden_states: bool = True
    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None

    def __post_init__(self, **kwargs):
        # Configs saved before the masking fields got their package-wide names.
        for old_name, new_name in _LEGACY_FIELD_NAMES.items():
            if old_name in kwargs:
                setattr(self, new_name, kwargs.pop(old_name))
        if "intermediate_size" in kwargs:  # BEiT's (and our first) name for the MLP width
            self.mlp_ratio = kwargs.pop("intermediate_size") / self.hidden_size
        if isinstance(self.image_size, (list, tuple)):
            self.image_size = list(self.image_size)
        self.stage_names = ["stem"] + [f"stage{index}" for index in range(1, self.num_hidden_layers + 1)]
        self.set_output_features_output_indices(
            out_indices=kwargs.pop("out_indices", None), out_features=kwargs.pop("out_features", None)
        )
        super().__post_init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> MVPConfig:
        """Builds a preset configuration ("base", "large" or "tiny"; see `MVP_PRESETS`), with overrides."""
        if name not in MVP_PRESETS:
            raise ValueError(f"Unknown MVP preset {name!r}; choose one of {sorted(MVP_PRESETS)}.")
        check_preset_overrides(cls, overrides, accepted=(*_LEGACY_FIELD_NAMES, "intermediate_size"))
        return cls(**{**MVP_PRESETS[name], **overrides})

    @property
    def grid_size(self) -> tuple[int, int]:
        """(H/p, W/p) patch grid at the configured image size."""
        height, width = _pair(self.image_size)
        return height // self.patch_size, width // self.patch_size

    def validate_mvp_architecture(self):
        """Part of `@strict` validation: shapes and choices the model relies on."""
        check_field_ranges(self, at_least_one=("teacher_dim",), positive=("smooth_l1_beta",))
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})."
            )
        height, width = _pair(self.image_size)
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be divisible by patch_size {self.patch_size}.")
        if self.loss_type not in _LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {_LOSS_TYPES}, got {self.loss_type!r}.")
        self.check_masking_fields()


_LEGACY_FIELD_NAMES = {
    "num_masked_patches": "num_masking_patches",
    "min_block_tokens": "mask_min_block_tokens",
    "min_aspect": "mask_min_aspect",
    "max_aspect": "mask_max_aspect",
}


def _pair(value: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


__all__ = ["MVP_PRESETS", "MVPConfig"]
