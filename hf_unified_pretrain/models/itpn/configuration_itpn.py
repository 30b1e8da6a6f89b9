# Copyright 2025 The hf_unified_pretrain contributors. All rights reserved.
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
"""iTPN / HiViT / Fast-iTPN configuration.

One config describes the three families, because they share one skeleton (Tian et al., "Integrally Pre-Trained
Transformer Pyramid Networks", CVPR 2023; Zhang et al., "HiViT", ICLR 2023; Tian et al., "Fast-iTPN", TPAMI 2024):

* a hierarchical patch embedding: every 16x16 patch is cut into 4x4 inner patches, two MLP-only stages work inside each
  patch, separated by 2x2 patch merging (strides 4 -> 8 -> 16); because nothing mixes patches there, masked tokens can
  be dropped before the first stage;
* a plain ViT stage on the 1/16 tokens (`num_hidden_layers` attention blocks);
* optionally the "integral" feature pyramid (strides 16, 8, 4) that iTPN pre-trains together with the backbone.
"""

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.backbone_utils import BackboneConfigMixin

from ..config_checks import check_field_ranges, check_preset_overrides
from ..masking_config import MaskingConfigMixin

PRETRAINING_TARGETS = ("pixel", "clip")
BACKBONE_LAYOUTS = ("seg", "det")
MFM_TARGETS = (None, "ema", "frozen")
FEATURE_LOSS_TYPES = ("smooth_l1", "mse", "l1", "cosine")

# Strides of the backbone stages: "stem" is the patch embedding, "stage1".."stage5" the pyramid levels.
STAGE_STRIDES = {"stem": 4, "stage1": 4, "stage2": 8, "stage3": 16, "stage4": 32, "stage5": 64}


@strict
class ITPNConfig(MaskingConfigMixin, BackboneConfigMixin, PreTrainedConfig):
    r"""
    Configuration of an iTPN model (HiViT backbone + integral feature pyramid), also covering plain HiViT and
    Fast-iTPN. The defaults give iTPN-B with the pixel (MAE-style) pre-training objective; `ITPNConfig.from_preset`
    gives every released size.

    Args:
        image_size (`int`): Training resolution; fixes the relative-position tables (when used) and the default grid of
            the absolute position embeddings. Models with position tables run at other sizes with
            `interpolate_pos_encoding=True` in the forward.
        patch_size (`int`): Side of a stage-3 token in pixels (16).
        inner_patches (`int`): Inner patches per patch side (4); two 2x2 merges take 4x4 inner patches to one token.
        num_channels (`int`): Input channels.
        hidden_size (`int`): Width of stage 3. Stages 1 and 2 have `hidden_size // 4` and `hidden_size // 2`.
        stage1_depth (`int`), stage2_depth (`int`): MLP-only blocks in stages 1 and 2.
        num_hidden_layers (`int`): Attention blocks in stage 3.
        num_attention_heads (`int`): Heads of every stage-3 attention block.
        bridge_mlp_ratio (`float`): MLP expansion of the stage-1/2 blocks.
        mlp_ratio (`float`): MLP expansion of stage 3 and of the pyramid blocks.
        hidden_act (`str`): Activation of the GELU MLPs (the SwiGLU variant always uses SiLU).
        qkv_bias (`bool`): Bias on the query/key/value projection.
        use_relative_position_bias (`bool`): A learned relative-position bias table per stage-3 block (iTPN CLIP and
            classifier checkpoints use it; pixel pre-training does not).
        use_absolute_position_embeddings (`bool`): Add learned absolute position embeddings before stage 3.
        position_embedding_grid_size (`int`, *optional*): Side of the grid the absolute position embeddings are stored
            for (the segmentation backbone keeps 14 = 224/16 while training at 512). Defaults to
            `image_size // patch_size`; any other grid is reached by bicubic interpolation.
        interpolate_pos_encoding (`bool`): Accept inputs of any size in every forward, as if
            `interpolate_pos_encoding=True` were passed: for callers that cannot pass it (heads such as DETR call the
            backbone with pixels only; the original detection backbone interpolates at every size).
        interpolate_pos_encoding_on_load (`bool`): When `from_pretrained` reads position tables saved for another image
            size (e.g. a 224 px pre-training checkpoint into a 512 px segmentation backbone), fit them to this config:
            absolute embeddings bicubic to the stored grid, relative-position bias tables bilinear, the decoder's fixed
            sin-cos table recomputed. With False such checkpoints fail to load with a size mismatch.
        resample_position_embeddings_on_drop (`bool`): The original pixel pre-training resamples the absolute position
            embeddings (bicubic, scale factor `(grid + 0.1) / grid`) whenever masked tokens are dropped, which shifts
            them slightly. Kept (`True`) for parity with the released code and checkpoints.
        use_patch_norm (`bool`): LayerNorm after the patch projection (off in Fast-iTPN).
        layer_scale_init_value (`float`): Initial value of layer scale; 0 disables it (pixel models). Stage-1/2 blocks
            get it too, except with `use_conv_mlp` (as Fast-iTPN).
        hidden_dropout_prob (`float`), attention_probs_dropout_prob (`float`): Dropout rates.
        drop_path_rate (`float`): Stochastic depth, linearly increasing over stage-1, stage-2 and stage-3 blocks.
        layer_norm_eps (`float`): Epsilon of every LayerNorm except the auxiliary CLIP blocks.
        aux_layer_norm_eps (`float`): Epsilon of the two auxiliary CLIP blocks (the original leaves them at PyTorch's
            default 1e-5).
        initializer_range (`float`): Std of the truncated-normal initialisation.
        use_conv_mlp (`bool`): Fast-iTPN "C-MLP" stages 1-2: channel-wise MLPs without layer scale and a 2x2
            convolutional merge (LayerNorm per position, then a biased projection).
        use_swiglu (`bool`): SwiGLU MLPs (hidden `mlp_ratio * hidden_size`) in stage 3 (Fast-iTPN).
        use_sub_ln (`bool`): An extra LayerNorm inside every stage-1/2/3 MLP, before its output projection (Fast-iTPN).
        use_mean_pooling (`bool`): Classification pooling. `True`: mean over tokens, then LayerNorm (iTPN, HiViT).
            `False`: final LayerNorm on the tokens, then mean (Fast-iTPN).
        use_pyramid (`bool`): Build the integral feature pyramid (needed for pre-training and the pyramid backbone).
        fpn_dim (`int`): Width of the pyramid.
        fpn_depth (`int`): MLP blocks after each top-down fusion (2 for pixel pre-training and segmentation, 1 for
            CLIP pre-training and detection).
        backbone_layout (`str`): `"seg"`: every level is concat(pyramid level, backbone feature of the same stride),
            stride 32 (and 64) by max-pooling (UperNet setting). `"det"`: the pyramid levels alone (all `fpn_dim`),
            strides 32 and 64 by average pooling (Mask R-CNN setting, the pyramid *is* the FPN).
        pretraining_target (`str`): `"pixel"` (MAE-style: masked tokens are dropped before stage 1, a decoder
            reconstructs normalised pixels) or `"clip"` (BEiT-style: masked stage-3 tokens are replaced by a mask
            token,
            the pyramid and an auxiliary branch regress a teacher's features).
        norm_pix_loss (`bool`): Per-patch normalised pixel targets (always on in the original).
        mask_ratio (`float`, *optional*): Fraction of masked tokens (random masking for `"pixel"`, block masking for
            `"clip"`), used when `num_masking_patches` is None.
        num_masking_patches (`int`, *optional*): Exact number of masked tokens; wins over `mask_ratio` when set (the
            CLIP presets mask 75 of 196 as the original).
        mask_min_block_tokens (`int`), mask_min_aspect (`float`), mask_max_aspect (`float`, *optional*): BEiT
            block-masking settings.
        decoder_hidden_size (`int`), decoder_num_hidden_layers (`int`), decoder_num_attention_heads (`int`),
            decoder_mlp_ratio (`float`): The pixel decoder.
        teacher_dim (`int`): Width of the teacher features regressed by the CLIP heads.
        teacher_name_or_path (`str`, *optional*): Local folder or Hub id of the teacher (recorded, never downloaded by
            the model itself).
        normalize_teacher_features (`bool`): LayerNorm without affine on the features the attached teacher computes
            (the original CLIP teacher ends with it). Precomputed `teacher_features` are used as given.
        clip_loss_on_all_tokens (`bool`): The original regresses the teacher on all tokens, not only masked ones.
        aux_layer_index (`int`, *optional*): Stage-3 block whose output feeds the auxiliary CLIP branch; defaults to
            `int(0.75 * num_hidden_layers)` as the original.
        num_aux_layers (`int`): Attention blocks of the auxiliary CLIP branch (0 disables the branch).
        pixel_loss_weight (`float`), clip_loss_weight (`float`), clip_aux_loss_weight (`float`): Loss weights.
        mfm_target (`str`, *optional*): Masked feature modelling on every pyramid level against a teacher ITPNModel's
            pyramid of the same level: `"ema"` (an EMA copy of the model) or `"frozen"` (a fixed pre-trained model).
        mfm_loss_weights (`list[float]`): MFM weights for the stride-4, 8 and 16 levels.
        mfm_loss_type (`str`): `"smooth_l1"`, `"mse"`, `"l1"` or `"cosine"`.
        mfm_normalize_target (`bool`): LayerNorm without affine on the teacher features (per inner position).
        mfm_teacher_dim (`int`, *optional*): Width of the teacher pyramid (defaults to `fpn_dim`).
        out_features (`list[str]`, *optional*), out_indices (`list[int]`, *optional*): Backbone outputs among
            `stage_names` = `["stem", "stage1", ..., "stage5"]` with strides 4 (stem), 4, 8, 16, 32 and 64 (at
            patch_size 16). Default: the last stage, as every transformers backbone, or the last one `image_size`
            reaches (stage4 below 4 patches a side, stage3 below 2); the segmentation setting is stage1-stage4,
            detection stage1-stage5.
    """

    model_type = "itpn"

    image_size: int = 224
    patch_size: int = 16
    inner_patches: int = 4
    num_channels: int = 3
    hidden_size: int = 512
    stage1_depth: int = 3
    stage2_depth: int = 3
    num_hidden_layers: int = 24
    num_attention_heads: int = 8
    bridge_mlp_ratio: float | int = 3.0
    mlp_ratio: float | int = 4.0
    hidden_act: str = "gelu"
    qkv_bias: bool = True
    use_relative_position_bias: bool = False
    use_absolute_position_embeddings: bool = True
    position_embedding_grid_size: int | None = None
    interpolate_pos_encoding: bool = False
    interpolate_pos_encoding_on_load: bool = True
    resample_position_embeddings_on_drop: bool = True
    use_patch_norm: bool = True
    layer_scale_init_value: float | int = 0.0
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    drop_path_rate: float | int = 0.0
    layer_norm_eps: float = 1e-6
    aux_layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    use_conv_mlp: bool = False
    use_swiglu: bool = False
    use_sub_ln: bool = False
    use_mean_pooling: bool = True
    use_pyramid: bool = True
    fpn_dim: int = 256
    fpn_depth: int = 2
    backbone_layout: str = "seg"
    pretraining_target: str = "pixel"
    norm_pix_loss: bool = True
    mask_ratio: float | None = 0.75
    num_masking_patches: int | None = None
    mask_min_block_tokens: int = 16
    mask_min_aspect: float = 0.3
    mask_max_aspect: float | None = None
    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 8
    decoder_num_attention_heads: int = 16
    decoder_mlp_ratio: float | int = 4.0
    teacher_dim: int = 512
    teacher_name_or_path: str | None = None
    normalize_teacher_features: bool = True
    clip_loss_on_all_tokens: bool = True
    aux_layer_index: int | None = None
    num_aux_layers: int = 2
    pixel_loss_weight: float | int = 1.0
    clip_loss_weight: float | int = 1.0
    clip_aux_loss_weight: float | int = 1.0
    mfm_target: str | None = None
    mfm_loss_weights: list[float] | tuple[float, ...] = (1.0, 1.0, 1.0)
    mfm_loss_type: str = "smooth_l1"
    mfm_normalize_target: bool = True
    mfm_teacher_dim: int | None = None
    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        self.mfm_loss_weights = [float(w) for w in self.mfm_loss_weights]
        self.stage_names = list(STAGE_STRIDES)
        out_indices, out_features = kwargs.pop("out_indices", None), kwargs.pop("out_features", None)
        if out_indices is None and out_features is None:
            # The last stage the config's own input reaches: stride 64 is empty below 64 px (4 patches a side).
            out_features = [self.stage_names[self.last_stage_index_at(self.image_size)]]
        self.set_output_features_output_indices(out_indices=out_indices, out_features=out_features)
        super().__post_init__(**kwargs)

    def last_stage_index_at(self, size: int) -> int:
        """Index in `stage_names` of the deepest stage with a non-empty map for a `size`-pixel input side.

        Stage 3 has one token per patch; stages 4 and 5 pool it by 2 and 4, so they need 2 and 4 patches a side.
        """
        patches = max(size // self.patch_size, 1)
        extra = min(max(patches.bit_length() - 1, 0), len(self.stage_names) - 4)
        return self.stage_names.index("stage3") + extra

    def validate_itpn_architecture(self) -> None:
        """Raises a ValueError naming the inconsistent fields."""
        check_field_ranges(
            self,
            at_least_one=(
                "inner_patches", "stage1_depth", "stage2_depth", "fpn_dim", "fpn_depth", "decoder_hidden_size",
                "decoder_num_hidden_layers", "decoder_num_attention_heads", "teacher_dim", "num_aux_layers",
                "position_embedding_grid_size", "mfm_teacher_dim",
            ),
            non_negative=("aux_layer_index", "layer_scale_init_value"),
            positive=("bridge_mlp_ratio", "decoder_mlp_ratio", "aux_layer_norm_eps"),
        )  # fmt: skip
        if self.hidden_size % 4 != 0:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by 4 (stage widths h/4, h/2, h).")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if self.inner_patches != 4:
            raise ValueError(
                f"inner_patches must be 4 (two 2x2 merges reach one token per patch), got {self.inner_patches}."
            )
        if self.patch_size % self.inner_patches != 0:
            raise ValueError(
                f"patch_size ({self.patch_size}) must be divisible by inner_patches ({self.inner_patches})."
            )
        if self.image_size % self.patch_size != 0:
            raise ValueError(f"image_size ({self.image_size}) must be divisible by patch_size ({self.patch_size}).")
        if self.pretraining_target not in PRETRAINING_TARGETS:
            raise ValueError(
                f"pretraining_target must be one of {PRETRAINING_TARGETS}, got {self.pretraining_target!r}."
            )
        if self.backbone_layout not in BACKBONE_LAYOUTS:
            raise ValueError(f"backbone_layout must be one of {BACKBONE_LAYOUTS}, got {self.backbone_layout!r}.")
        if self.mfm_target not in MFM_TARGETS:
            raise ValueError(f"mfm_target must be one of {MFM_TARGETS}, got {self.mfm_target!r}.")
        if self.mfm_loss_type not in FEATURE_LOSS_TYPES:
            raise ValueError(f"mfm_loss_type must be one of {FEATURE_LOSS_TYPES}, got {self.mfm_loss_type!r}.")
        if len(self.mfm_loss_weights) != 3:
            raise ValueError(f"mfm_loss_weights needs one weight per pyramid level (3), got {self.mfm_loss_weights}.")
        if self.decoder_hidden_size % 16 != 0:
            raise ValueError(
                f"decoder_hidden_size ({self.decoder_hidden_size}) must be divisible by 16: the stride-4 level is "
                "projected to decoder_hidden_size / 16 per inner position."
            )
        if self.decoder_hidden_size % self.decoder_num_attention_heads != 0:
            raise ValueError(
                f"decoder_hidden_size ({self.decoder_hidden_size}) must be divisible by decoder_num_attention_heads "
                f"({self.decoder_num_attention_heads})."
            )
        self.check_masking_fields()
        if self.aux_layer_index is not None and not 0 <= self.aux_layer_index < self.num_hidden_layers:
            raise ValueError(
                f"aux_layer_index ({self.aux_layer_index}) must index a stage-3 block "
                f"(0..{self.num_hidden_layers - 1})."
            )

    @property
    def stage_widths(self) -> tuple[int, int, int]:
        """Widths of stages 1, 2 and 3."""
        return self.hidden_size // 4, self.hidden_size // 2, self.hidden_size

    @property
    def resolved_aux_layer_index(self) -> int:
        """Stage-3 block feeding the auxiliary CLIP branch: `aux_layer_index`, else `int(0.75 * depth)`."""
        if self.aux_layer_index is not None:
            return self.aux_layer_index
        return int(0.75 * self.num_hidden_layers)

    @property
    def grid_size(self) -> int:
        """Tokens per side at `image_size`."""
        return self.image_size // self.patch_size

    @property
    def resolved_position_embedding_grid_size(self) -> int:
        """Side of the grid the absolute position embeddings are stored for."""
        return self.position_embedding_grid_size or self.grid_size

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "ITPNConfig":
        """Builds the config of a released model, e.g. `ITPNConfig.from_preset("itpn-base-pixel")`.

        Args:
            name: A key of `ITPN_PRESETS`.
            **overrides: Fields to change (image_size, num_labels, out_features, ...).
        """
        if name not in ITPN_PRESETS:
            raise ValueError(f"Unknown preset {name!r}; available: {sorted(ITPN_PRESETS)}.")
        check_preset_overrides(cls, overrides)
        return cls(**{**ITPN_PRESETS[name], **overrides})


_ITPN_BASE = {
    "hidden_size": 512,
    "stage1_depth": 3,
    "stage2_depth": 3,
    "num_hidden_layers": 24,
    "num_attention_heads": 8,
}
_ITPN_LARGE = {
    "hidden_size": 768,
    "stage1_depth": 2,
    "stage2_depth": 2,
    "num_hidden_layers": 40,
    "num_attention_heads": 12,
}
_PIXEL = {"pretraining_target": "pixel", "use_relative_position_bias": False, "fpn_depth": 2}
_CLIP = {
    "pretraining_target": "clip",
    "use_relative_position_bias": True,
    "fpn_depth": 1,
    "layer_scale_init_value": 0.1,
    "num_masking_patches": 75,
}
_FAST = {
    "use_conv_mlp": True,
    "use_swiglu": True,
    "use_sub_ln": True,
    "use_patch_norm": False,
    "use_mean_pooling": False,
    "use_pyramid": False,
    "mlp_ratio": 3.0,
    "layer_scale_init_value": 0.1,
}
# HiViT (Zhang et al., ICLR 2023): `depths` [1, 1, 10] (T), [2, 2, 20] (S, B) where each stage-1/2 unit holds two MLP
# blocks; with the rel-pos bias this gives the paper's 19.2M / 37.5M / 66.4M classifier parameters. Large is
# mmpretrain's addition ([2, 2, 40], Apache-2.0).
_HIVIT = {"use_pyramid": False, "use_relative_position_bias": True}

ITPN_PRESETS: dict[str, dict[str, Any]] = {
    # iTPN, pixel target (itpn_pixel: itpn_{base,large}_dec512d8b)
    "itpn-base-pixel": {**_ITPN_BASE, **_PIXEL},
    "itpn-large-pixel": {**_ITPN_LARGE, **_PIXEL},
    # iTPN, CLIP target (itpn_clip: clip_tpn_base_3324 with CLIP-B/16, clip_tpn_large_2240 with CLIP-L/14)
    "itpn-base-clip": {**_ITPN_BASE, **_CLIP, "teacher_dim": 512, "drop_path_rate": 0.1},
    # The large model starts layer scale at 1e-5 (run_itpn_pretraining.py: "0.1 for base, 1e-5 for large").
    "itpn-large-clip": {
        **_ITPN_LARGE,
        **_CLIP,
        "teacher_dim": 768,
        "drop_path_rate": 0.2,
        "layer_scale_init_value": 1e-5,
    },
    # Fast-iTPN (fast_itpn: fast_itpn_{tiny_1112,small_2220,base_3324}_patch16_224, large_2240_patch16_256)
    "fast-itpn-tiny": {
        **_FAST,
        "hidden_size": 384,
        "stage1_depth": 1,
        "stage2_depth": 1,
        "num_hidden_layers": 12,
        "num_attention_heads": 6,
    },
    "fast-itpn-small": {
        **_FAST,
        "hidden_size": 384,
        "stage1_depth": 2,
        "stage2_depth": 2,
        "num_hidden_layers": 20,
        "num_attention_heads": 6,
    },
    "fast-itpn-base": {**_FAST, **_ITPN_BASE},
    "fast-itpn-large": {**_FAST, **_ITPN_LARGE, "image_size": 256},
    # HiViT
    "hivit-tiny": {
        **_HIVIT,
        "hidden_size": 384,
        "stage1_depth": 2,
        "stage2_depth": 2,
        "num_hidden_layers": 10,
        "num_attention_heads": 6,
    },
    "hivit-small": {
        **_HIVIT,
        "hidden_size": 384,
        "stage1_depth": 4,
        "stage2_depth": 4,
        "num_hidden_layers": 20,
        "num_attention_heads": 6,
    },
    "hivit-base": {
        **_HIVIT,
        "hidden_size": 512,
        "stage1_depth": 4,
        "stage2_depth": 4,
        "num_hidden_layers": 20,
        "num_attention_heads": 8,
    },
    "hivit-large": {
        **_HIVIT,
        "hidden_size": 768,
        "stage1_depth": 4,
        "stage2_depth": 4,
        "num_hidden_layers": 40,
        "num_attention_heads": 12,
    },
    # A few-thousand-parameter model for tests and smoke runs.
    "itpn-tiny-test": {
        "image_size": 32,
        "hidden_size": 32,
        "stage1_depth": 1,
        "stage2_depth": 1,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "fpn_dim": 16,
        "fpn_depth": 1,
        "decoder_hidden_size": 32,
        "decoder_num_hidden_layers": 1,
        "decoder_num_attention_heads": 2,
        "teacher_dim": 16,
        "mask_min_block_tokens": 1,
    },
}

__all__ = ["ITPN_PRESETS", "ITPNConfig"]
