"""InternImage configuration: a 4-stage conv backbone whose token mixer is DCNv3 deformable convolution."""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.backbone_utils import BackboneConfigMixin

from ..config_checks import check_preset_overrides

# The released sizes exactly as the original's classification configs build them (OpenGVLab/InternImage
# classification/configs/internimage_*.yaml through models/build.py), plus a tiny configuration for tests.
# T: pre-norm; S/B/L/XL: post-norm + layer-scale 1e-5 (L/XL: offset scale 2); H: res-post-norm, depth-wise 5x5,
# center feature scale, level-2 post norms, attention-pooling ("clip projector") head; G: like H but post-norm.
INTERNIMAGE_PRESETS: dict[str, dict[str, Any]] = {
    "internimage-t": {
        "channels": 64,
        "depths": [4, 4, 18, 4],
        "groups": [4, 8, 16, 32],
        "drop_path_rate": 0.1,
    },
    "internimage-s": {
        "channels": 80,
        "depths": [4, 4, 21, 4],
        "groups": [5, 10, 20, 40],
        "layer_scale": 1e-5,
        "post_norm": True,
        "drop_path_rate": 0.4,
    },
    "internimage-b": {
        "channels": 112,
        "depths": [4, 4, 21, 4],
        "groups": [7, 14, 28, 56],
        "layer_scale": 1e-5,
        "post_norm": True,
        "drop_path_rate": 0.5,
    },
    "internimage-l": {
        "channels": 160,
        "depths": [5, 5, 22, 5],
        "groups": [10, 20, 40, 80],
        "layer_scale": 1e-5,
        "post_norm": True,
        "offset_scale": 2.0,
        "drop_path_rate": 0.1,
        "image_size": 384,
    },
    "internimage-xl": {
        "channels": 192,
        "depths": [5, 5, 24, 5],
        "groups": [12, 24, 48, 96],
        "layer_scale": 1e-5,
        "post_norm": True,
        "offset_scale": 2.0,
        "drop_path_rate": 0.2,
        "image_size": 384,
    },
    "internimage-h": {
        "channels": 320,
        "depths": [6, 6, 32, 6],
        "groups": [10, 20, 40, 80],
        "dw_kernel_size": 5,
        "res_post_norm": True,
        "level2_post_norm": True,
        "level2_post_norm_block_ids": [5, 11, 17, 23, 29],
        "center_feature_scale": True,
        "use_clip_projector": True,
        "drop_path_rate": 0.2,
        "image_size": 640,
    },
    "internimage-g": {
        "channels": 512,
        "depths": [2, 2, 48, 4],
        "groups": [16, 32, 64, 128],
        "dw_kernel_size": 5,
        "post_norm": True,
        "level2_post_norm": True,
        "level2_post_norm_block_ids": [5, 11, 17, 23, 29, 35, 41, 47],
        "center_feature_scale": True,
        "use_clip_projector": True,
        "drop_path_rate": 0.4,
        "image_size": 512,
    },
    "tiny": {
        "channels": 16,
        "depths": [1, 1, 2, 1],
        "groups": [1, 2, 4, 8],
        "drop_path_rate": 0.0,
        "image_size": 64,
    },
}


@strict
class InternImageConfig(BackboneConfigMixin, PreTrainedConfig):
    r"""Configuration of InternImage (Wang et al., CVPR 2023), the backbone M3I pre-trains.

    Stem (two stride-2 3x3 convs with LayerNorms) → 4 stages of DCNv3 blocks (stage i has `channels * 2**i` channels
    and `groups[i]` DCNv3 groups) separated by stride-2 3x3 conv downsampling → classification head. Three block orders
    exist, as in the original: pre-norm (`post_norm=False`, T), post-norm (`post_norm=True`, S-XL and G), and pre-norm
    with a second norm on each residual branch (`res_post_norm=True`, H). Layer-scale applies to pre- and post-norm.

    Args:
        channels: Width of the first stage (the original's `channels`); stage i has `channels * 2**i`.
        depths: Blocks per stage.
        groups: DCNv3 groups per stage; must divide that stage's width.
        mlp_ratio: MLP hidden width / block width.
        kernel_size: DCNv3 sampling kernel (the original always uses 3).
        dw_kernel_size: Depth-wise conv kernel that produces offsets and mask (None = `kernel_size`; H/G use 5).
        offset_scale: Scale of the kernel grid and offsets (L/XL: 2).
        post_norm: Post-norm blocks (norm after each branch); without `center_feature_scale` the stages then have no
            final norm.
        res_post_norm: Pre-norm blocks with an extra norm on each residual branch (H). As in the original, it has no
            effect when `layer_scale` is set (the layer-scale block order wins; no such norms are built).
        layer_scale: Initial layer-scale value (None = no layer-scale).
        center_feature_scale: Gate mixing the DCNv3 output with its projected input (H/G); implies the stage norms.
        remove_center: Leave out the kernel centre from DCNv3 sampling.
        level2_post_norm: Extra LayerNorms after some blocks of stage 3 (H/G).
        level2_post_norm_block_ids: Indices (within stage 3) of the blocks followed by such a norm.
        use_clip_projector: Classification head of H/G: stage-4 1x1 conv + pixel shuffle plus stage-3 1x1 conv, then
            attention pooling (the "clip projector") and a LayerNorm. Otherwise (T-XL): 1x1 conv to
            `cls_scale * 8C` + BatchNorm + GELU + average pooling.
        cls_scale: Width multiplier of the T-XL head conv.
        clip_pretrain_embed_dim / clip_num_heads / clip_embed_dim: The H/G head's widths (original: 1024, 16, 768).
        hidden_act: Activation of the stem, DCNv3 offset branch, MLPs and head.
        hidden_dropout_prob: Dropout after the stem and inside MLPs (the original's `drop_rate`).
        drop_path_rate: Stochastic depth of the last block.
        drop_path_type: "linear" (0 → drop_path_rate over all blocks) or "uniform".
        layer_norm_eps: LayerNorm epsilon (1e-6 everywhere in the original).
        initializer_range: Std of the truncated-normal initialisation of linear layers.
        image_size: Training resolution (for the image processor and cards; any size >= 32 runs).
        num_channels: Input channels.
        out_features / out_indices: Backbone stages ("stem", "stage1".."stage4") to return.
    """

    model_type = "internimage"

    channels: int = 64
    depths: list[int] | tuple[int, ...] = (4, 4, 18, 4)
    groups: list[int] | tuple[int, ...] = (4, 8, 16, 32)
    mlp_ratio: float | int = 4.0
    kernel_size: int = 3
    dw_kernel_size: int | None = None
    offset_scale: float | int = 1.0
    post_norm: bool = False
    res_post_norm: bool = False
    layer_scale: float | None = None
    center_feature_scale: bool = False
    remove_center: bool = False
    level2_post_norm: bool = False
    level2_post_norm_block_ids: list[int] | None = None
    use_clip_projector: bool = False
    cls_scale: float | int = 1.5
    clip_pretrain_embed_dim: int = 1024
    clip_num_heads: int = 16
    clip_embed_dim: int = 768
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    drop_path_rate: float | int = 0.1
    drop_path_type: str = "linear"
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    image_size: int = 224
    num_channels: int = 3
    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None

    def __post_init__(self, **kwargs):
        self.depths = list(self.depths)
        self.groups = list(self.groups)
        if self.level2_post_norm_block_ids is not None:
            self.level2_post_norm_block_ids = list(self.level2_post_norm_block_ids)
        self.stage_names = ["stem"] + [f"stage{index}" for index in range(1, len(self.depths) + 1)]
        self.set_output_features_output_indices(
            out_indices=kwargs.pop("out_indices", None), out_features=kwargs.pop("out_features", None)
        )
        super().__post_init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> InternImageConfig:
        """A released size ("internimage-t", -s, -b, -l, -xl, -h, -g) or "tiny" (see `INTERNIMAGE_PRESETS`)."""
        key = name.lower()
        if key not in INTERNIMAGE_PRESETS and f"internimage-{key}" in INTERNIMAGE_PRESETS:
            key = f"internimage-{key}"
        if key not in INTERNIMAGE_PRESETS:
            raise ValueError(f"Unknown InternImage preset {name!r}; choose one of {sorted(INTERNIMAGE_PRESETS)}.")
        check_preset_overrides(cls, overrides)
        return cls(**{**INTERNIMAGE_PRESETS[key], **overrides})

    @property
    def hidden_sizes(self) -> list[int]:
        """Width of every stage: channels, 2 * channels, ..."""
        return [self.channels * 2**index for index in range(len(self.depths))]

    @property
    def num_hidden_layers(self) -> int:
        """Total number of DCNv3 blocks."""
        return sum(self.depths)

    @property
    def uses_res_post_norm(self) -> bool:
        """Whether blocks have the residual-branch norms (`res_post_norm` without layer-scale, as the original)."""
        return self.res_post_norm and self.layer_scale is None

    @property
    def has_stage_norm(self) -> bool:
        """Whether each stage ends with a LayerNorm (pre-norm blocks, or the center feature scale gate)."""
        return not self.post_norm or self.center_feature_scale

    def validate_internimage_architecture(self):
        """Part of `@strict` validation: shapes and choices the model relies on, each error naming the fix."""
        if len(self.depths) != len(self.groups) or not self.depths:
            raise ValueError(
                f"depths {self.depths} and groups {self.groups} need one entry per stage; give both the same length."
            )
        for index, (width, group) in enumerate(zip(self.hidden_sizes, self.groups)):
            if group <= 0 or width % group != 0:
                raise ValueError(
                    f"groups[{index}]={group} does not divide stage {index + 1}'s width {width} (= channels "
                    f"{self.channels} * 2**{index}); choose a divisor of {width} or change `channels`."
                )
        if self.channels % 2 != 0:
            raise ValueError(f"channels ({self.channels}) must be even: the stem's first conv has channels / 2.")
        if self.kernel_size % 2 == 0 or (self.dw_kernel_size is not None and self.dw_kernel_size % 2 == 0):
            raise ValueError("kernel_size and dw_kernel_size must be odd (centred 'same' convolutions).")
        if self.post_norm and self.res_post_norm:
            raise ValueError("post_norm and res_post_norm are two different block orders; enable at most one.")
        if self.level2_post_norm:
            if len(self.depths) < 3:
                raise ValueError("level2_post_norm needs at least 3 stages (it normalises inside stage 3).")
            ids = self.level2_post_norm_block_ids or []
            if not ids or any(not 0 <= i < self.depths[2] for i in ids):
                raise ValueError(
                    f"level2_post_norm_block_ids {self.level2_post_norm_block_ids} must be a non-empty list of block "
                    f"indices within stage 3 (0..{self.depths[2] - 1})."
                )
        if self.drop_path_type not in ("linear", "uniform"):
            raise ValueError(f"drop_path_type must be 'linear' or 'uniform', got {self.drop_path_type!r}.")
        if self.use_clip_projector and self.clip_pretrain_embed_dim % self.clip_num_heads != 0:
            raise ValueError(
                f"clip_pretrain_embed_dim ({self.clip_pretrain_embed_dim}) must be divisible by clip_num_heads "
                f"({self.clip_num_heads})."
            )
        if self.use_clip_projector and len(self.depths) < 2:
            raise ValueError("use_clip_projector needs at least 2 stages (it combines the last two).")


__all__ = ["INTERNIMAGE_PRESETS", "InternImageConfig"]
