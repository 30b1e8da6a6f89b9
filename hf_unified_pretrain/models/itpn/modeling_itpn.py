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
"""PyTorch iTPN: HiViT backbone + integral feature pyramid, pixel and CLIP-target pre-training, Fast-iTPN options.

Tensor layout used throughout: a feature of stride `16 / s` is kept per 16x16 patch as `(B, L, s, s, C)` (L patches,
an `s x s` grid of sub-patch positions inside each). Stages 1-2 and the pyramid never mix patches, so the same code
runs on all N patches or on the L = K visible ones when masked tokens are dropped (pixel pre-training).
`tokens_to_feature_map` turns the layout into an image-shaped `(B, C, H / stride, W / stride)` map.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.backbone_utils import BackboneMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BackboneOutput, ImageClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from ...layers import (
    DropPath,
    check_position_grid,
    eager_attention_forward,
    get_2d_sincos_pos_embed,
    grid_of_size,
    interpolate_pos_embed,
    num_relative_distances,
    patch_grid_of,
    register_position_table_resizing,
    relative_position_index,
    resize_relative_position_bias_table,
    strict_forward_kwargs,
)
from ...masking import (
    BlockMaskGenerator,
    RandomMaskGenerator,
    gather_tokens,
    mask_to_ids,
    random_mask,
    validate_bool_masked_pos,
)
from ...objectives import (
    feature_regression_loss,
    layer_norm_no_affine,
    patchify,
    pixel_reconstruction_loss,
    weighted_total,
)
from ...teachers import TeacherHolderMixin
from .configuration_itpn import ITPNConfig

# Parts of an ITPNForPreTraining checkpoint that only pre-training uses: pixel decoder, CLIP-target heads, MFM heads.
PRETRAINING_HEAD_KEYS = [r"^decoder\.", r"^feature_head\.", r"^aux_head\.", r"^mfm_heads\."]
MASK_TOKEN_KEY = r"^itpn\.embeddings\.mask_token$"
# Parts of a classification checkpoint: its linear head and the pooler's norm (a backbone builds neither).
CLASSIFIER_KEY = r"^classifier\."
POOLER_NORM_KEY = r"(^|\.)pooler\.layernorm\."

# Teacher slot of the masked-feature-modelling teacher (the CLIP teacher uses the default slot).
MFM_TEACHER = "mfm"

# Sub-patch grid side of the pyramid levels, finest first: strides 4, 8 and 16 inside a 16x16 patch.
LEVEL_SIDES = (4, 2, 1)
LEVEL_STRIDES = (4, 8, 16)


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class ITPNModelOutput(ModelOutput):
    """Output of `ITPNModel`.

    Args:
        last_hidden_state: (B, L, C) stage-3 tokens (after the final LayerNorm when `use_mean_pooling=False`).
            L = N patches, or the K visible ones when masked tokens were dropped.
        pooler_output: (B, C) mean-pooled tokens (+ LayerNorm with `use_mean_pooling`), when a pooler is built.
        stage_features: Stage outputs in patch layout: (B, L, 4, 4, C/4), (B, L, 2, 2, C/2), (B, L, 1, 1, C)
            for strides 4, 8, 16 (stage 3 before any final norm).
        pyramid_features: Integral pyramid levels in patch layout: (B, L, 4, 4, F), (B, L, 2, 2, F), (B, L, 1, 1, F)
            for strides 4, 8, 16, when the pyramid is built.
        hidden_states: Input of stage 3 and the output of each stage-3 block, each (B, L, C).
        attentions: Attention probabilities of each stage-3 block, each (B, heads, L, L).
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    stage_features: tuple[torch.FloatTensor, ...] | None = None
    pyramid_features: tuple[torch.FloatTensor, ...] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class ITPNForPreTrainingOutput(ModelOutput):
    """Output of `ITPNForPreTraining`.

    Args:
        loss: Weighted total of `losses` (weights are config fields).
        losses: Named parts: `"pixel"` or `"clip"` + `"clip_aux"`, plus `"mfm_stride{4,8,16}"` with MFM.
        logits: Pixel target: (B, N, p*p*C) predicted patches (MAE patch order). CLIP target: (B, N, teacher_dim).
        aux_logits: CLIP target: (B, N, teacher_dim) from the auxiliary branch.
        mfm_logits: With MFM: per level (B, N, s*s*F_teacher) predictions, strides 4, 8, 16.
        bool_masked_pos: (B, N) the mask used (True = masked).
        hidden_states: Stage-3 hidden states of the encoder (see `ITPNModelOutput`).
        attentions: Stage-3 attentions of the encoder.
    """

    loss: torch.FloatTensor | None = None
    losses: dict[str, torch.FloatTensor] | None = None
    logits: torch.FloatTensor | None = None
    aux_logits: torch.FloatTensor | None = None
    mfm_logits: tuple[torch.FloatTensor, ...] | None = None
    bool_masked_pos: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------


def tokens_to_feature_map(tokens: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """Patch layout (B, h*w, s, s, C) -> image layout (B, C, h*s, w*s)."""
    batch, _, side, _, channels = tokens.shape
    height, width = grid_size
    maps = tokens.reshape(batch, height, width, side, side, channels).permute(0, 5, 1, 3, 2, 4)
    return maps.reshape(batch, channels, height * side, width * side).contiguous()


def patch_grid(pixel_values: torch.Tensor, config: ITPNConfig) -> tuple[int, int]:
    """(h, w) patch grid of a (B, C, H, W) batch; raises a ValueError naming the problem and the fix otherwise."""
    return patch_grid_of(pixel_values, config.num_channels, config.patch_size)


@functools.lru_cache(maxsize=16)
def _cached_relative_position_index(grid_size: tuple[int, int]) -> torch.Tensor:
    return relative_position_index(grid_size, with_cls_token=False)


def select_hidden_states(
    hidden_states: tuple[torch.Tensor, ...], selection: bool | int | list[int]
) -> tuple[torch.Tensor | None, ...]:
    """Keeps the hidden states an `output_hidden_states` index (list) selects, as `capture_outputs` does (the others
    become None); `True` keeps all. For outputs built here rather than captured (backbone maps, the auxiliary branch's
    forced capture)."""
    if isinstance(selection, bool):
        return hidden_states
    indices = [selection] if isinstance(selection, int) else selection
    chosen = {index % len(hidden_states) for index in indices}
    return tuple(state if i in chosen else None for i, state in enumerate(hidden_states))


def drop_path_rates(config: ITPNConfig) -> list[float]:
    """Stochastic-depth rate of every stage-1, stage-2 and stage-3 block, increasing linearly (as the original)."""
    total = config.stage1_depth + config.stage2_depth + config.num_hidden_layers
    return torch.linspace(0, config.drop_path_rate, total, device="cpu").tolist()


# ----------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------


class ITPNPatchEmbeddings(nn.Module):
    """Projects 4x4-pixel inner patches and groups them per 16x16 patch: (B, C_in, H, W) -> (B, N, 4, 4, C/4)."""

    def __init__(self, config: ITPNConfig) -> None:
        super().__init__()
        self.config = config
        kernel = config.patch_size // config.inner_patches
        width = config.stage_widths[0]
        self.projection = nn.Conv2d(config.num_channels, width, kernel_size=kernel, stride=kernel)
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps) if config.use_patch_norm else None

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        # With the weights' dtype, the shared check also rejects integer/raw 0..255/NaN pixels and dtype mismatches.
        grid = patch_grid_of(
            pixel_values,
            self.config.num_channels,
            self.config.patch_size,
            dtype=self.projection.weight.dtype,
            training=self.training,
        )
        batch = pixel_values.shape[0]
        inner = self.config.inner_patches
        embeddings = self.projection(pixel_values.to(self.projection.weight.dtype))
        embeddings = embeddings.reshape(batch, -1, grid[0], inner, grid[1], inner)
        embeddings = embeddings.permute(0, 2, 4, 3, 5, 1).reshape(batch, grid[0] * grid[1], inner, inner, -1)
        if self.norm is not None:
            embeddings = self.norm(embeddings)
        return embeddings, grid


class ITPNMlp(nn.Module):
    """Two-layer MLP with an optional LayerNorm before the output projection (sub-LN, Fast-iTPN)."""

    def __init__(self, config: ITPNConfig, dim: int, hidden_dim: int, use_sub_ln: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.activation = ACT2FN[config.hidden_act]
        self.norm = nn.LayerNorm(hidden_dim, eps=config.layer_norm_eps) if use_sub_ln else None
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.activation(self.fc1(hidden_states)))
        if self.norm is not None:
            hidden_states = self.norm(hidden_states)
        return self.dropout(self.fc2(hidden_states))


class ITPNSwiGLU(nn.Module):
    """SwiGLU MLP: `down(norm(silu(gate(x)) * up(x)))` (the "naive" SwiGLU of Fast-iTPN / EVA-02)."""

    def __init__(self, config: ITPNConfig, dim: int, hidden_dim: int, use_sub_ln: bool) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden_dim)
        self.up_proj = nn.Linear(dim, hidden_dim)
        self.activation = nn.SiLU()
        self.norm = nn.LayerNorm(hidden_dim, eps=config.layer_norm_eps) if use_sub_ln else None
        self.down_proj = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.activation(self.gate_proj(hidden_states)) * self.up_proj(hidden_states)
        if self.norm is not None:
            hidden_states = self.norm(hidden_states)
        return self.dropout(self.down_proj(hidden_states))


class ITPNMlpBlock(GradientCheckpointingLayer):
    """Pre-norm residual MLP block without attention (stages 1-2 and the pyramid); works on any (..., dim) layout."""

    def __init__(
        self,
        config: ITPNConfig,
        dim: int,
        mlp_ratio: float,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 0.0,
        use_sub_ln: bool = False,
    ) -> None:
        super().__init__()
        self.layernorm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = ITPNMlp(config, dim, int(dim * mlp_ratio), use_sub_ln)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0.0 else nn.Identity()
        self.layer_scale = (
            nn.Parameter(torch.full((dim,), float(layer_scale_init_value))) if layer_scale_init_value > 0 else None
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        update = self.mlp(self.layernorm(hidden_states))
        if self.layer_scale is not None:
            update = self.layer_scale * update
        return hidden_states + self.drop_path(update)


class ITPNPatchMerging(nn.Module):
    """2x2 merge inside each patch: (B, L, s, s, C) -> (B, L, s/2, s/2, 2C).

    HiViT: concatenate the four positions, LayerNorm(4C), bias-free projection. C-MLP (Fast-iTPN): LayerNorm(C) per
    position first and a biased projection, which is exactly its 2x2 stride-2 convolution.
    """

    def __init__(self, config: ITPNConfig, dim: int) -> None:
        super().__init__()
        self.norm_each_position = config.use_conv_mlp
        self.norm = nn.LayerNorm(dim if self.norm_each_position else 4 * dim, eps=config.layer_norm_eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=self.norm_each_position)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.norm_each_position:
            hidden_states = self.norm(hidden_states)
        # Order (row, col): (0, 0), (1, 0), (0, 1), (1, 1) -- fixed by the released weights.
        hidden_states = torch.cat(
            [
                hidden_states[..., 0::2, 0::2, :],
                hidden_states[..., 1::2, 0::2, :],
                hidden_states[..., 0::2, 1::2, :],
                hidden_states[..., 1::2, 1::2, :],
            ],
            dim=-1,
        )
        if not self.norm_each_position:
            hidden_states = self.norm(hidden_states)
        return self.reduction(hidden_states)


class ITPNPatchSplit(nn.Module):
    """Pyramid upsampling inside each patch: (B, L, s, s, C_in) -> (B, L, 2s, 2s, F) by LayerNorm + projection."""

    def __init__(self, config: ITPNConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.norm = nn.LayerNorm(in_dim, eps=config.layer_norm_eps)
        self.reduction = nn.Linear(in_dim, 4 * out_dim, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, length, side, _, _ = hidden_states.shape
        hidden_states = self.reduction(self.norm(hidden_states))
        hidden_states = hidden_states.reshape(batch, length, side, side, 2, 2, self.out_dim)
        return hidden_states.permute(0, 1, 2, 4, 3, 5, 6).reshape(batch, length, 2 * side, 2 * side, self.out_dim)


class ITPNSelfAttention(nn.Module):
    """Multi-head self-attention with an optional learned relative-position bias (one table per block)."""

    def __init__(self, config: ITPNConfig, dim: int, num_heads: int, use_relative_position_bias: bool) -> None:
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        self.qkv = nn.Linear(dim, 3 * dim, bias=config.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.relative_position_bias_table = (
            nn.Parameter(torch.zeros(num_relative_distances(config.grid_size, with_cls_token=False), num_heads))
            if use_relative_position_bias
            else None
        )

    def resize_checkpoint_position_table(self, name: str, table: torch.Tensor) -> torch.Tensor:
        """A checkpoint's relative-position bias table of another image size → this model's grid (bilinear)."""
        if not self.config.interpolate_pos_encoding_on_load:
            return table
        side = self.config.grid_size
        offsets_h, offsets_w = grid_of_size(table.shape[0], like=(2 * side - 1, 2 * side - 1))
        old_grid = ((offsets_h + 1) // 2, (offsets_w + 1) // 2)
        return resize_relative_position_bias_table(table, old_grid, side)

    def forward(
        self,
        hidden_states: torch.Tensor,
        relative_position_index: torch.Tensor | None = None,
        grid_size: tuple[int, int] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, L, C); relative_position_index (1 or B, L, L) into the table of the input's (h, w)
        `grid_size` (the table is resized bilinearly when that is not the configured grid). Returns (B, L, C) and the
        attention weights."""
        batch, length, dim = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
        attention_bias = None
        if self.relative_position_bias_table is not None:
            if relative_position_index is None:
                raise ValueError("This block has a relative-position bias table but got no relative_position_index.")
            table = self.relative_position_bias_table
            if grid_size is not None:
                table = resize_relative_position_bias_table(table, self.config.grid_size, tuple(grid_size))
            attention_bias = table[relative_position_index].permute(0, 3, 1, 2)
            attention_bias = attention_bias.to(query.dtype)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_bias,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = self.proj_dropout(self.proj(attn_output.reshape(batch, length, dim)))
        return attn_output, attn_weights


class ITPNLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block: attention and MLP (GELU or SwiGLU), optional layer scale and stochastic depth."""

    def __init__(
        self,
        config: ITPNConfig,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path_rate: float = 0.0,
        layer_norm_eps: float | None = None,
        use_relative_position_bias: bool = False,
        layer_scale_init_value: float = 0.0,
        use_swiglu: bool = False,
        use_sub_ln: bool = False,
    ) -> None:
        super().__init__()
        eps = config.layer_norm_eps if layer_norm_eps is None else layer_norm_eps
        self.layernorm_before = nn.LayerNorm(dim, eps=eps)
        self.attention = ITPNSelfAttention(config, dim, num_heads, use_relative_position_bias)
        self.layernorm_after = nn.LayerNorm(dim, eps=eps)
        mlp_class = ITPNSwiGLU if use_swiglu else ITPNMlp
        self.mlp = mlp_class(config, dim, int(dim * mlp_ratio), use_sub_ln)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0.0 else nn.Identity()
        if layer_scale_init_value > 0:
            self.layer_scale_1 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
            self.layer_scale_2 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        else:
            self.layer_scale_1, self.layer_scale_2 = None, None

    def forward(
        self,
        hidden_states: torch.Tensor,
        relative_position_index: torch.Tensor | None = None,
        grid_size: tuple[int, int] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attention_output, attn_weights = self.attention(
            self.layernorm_before(hidden_states), relative_position_index, grid_size, **kwargs
        )
        if self.layer_scale_1 is not None:
            attention_output = self.layer_scale_1 * attention_output
        hidden_states = hidden_states + self.drop_path(attention_output)
        mlp_output = self.mlp(self.layernorm_after(hidden_states))
        if self.layer_scale_2 is not None:
            mlp_output = self.layer_scale_2 * mlp_output
        return hidden_states + self.drop_path(mlp_output), attn_weights


# ----------------------------------------------------------------------------------------------------------------
# Embeddings (patch embedding + stages 1-2), encoder (stage 3), pyramid
# ----------------------------------------------------------------------------------------------------------------


class ITPNEmbeddings(nn.Module):
    """Everything before stage 3: patch embedding, the MLP-only stages 1-2 with their merges, masking, positions.

    Stages 1-2 work inside each patch, so this is HiViT's hierarchical patch embedding; with `ids_keep` only the
    visible patches are computed (MAE-style token dropping).
    """

    def __init__(self, config: ITPNConfig, use_mask_token: bool | None = None) -> None:
        super().__init__()
        self.config = config
        width1, width2, width3 = config.stage_widths
        rates = drop_path_rates(config)
        # Fast-iTPN's C-MLP bridge blocks carry no layer scale; HiViT/iTPN ones share the model's.
        bridge_scale = 0.0 if config.use_conv_mlp else config.layer_scale_init_value
        depth1, depth2 = config.stage1_depth, config.stage2_depth
        self.patch_embeddings = ITPNPatchEmbeddings(config)
        self.stage1 = nn.ModuleList(
            ITPNMlpBlock(config, width1, config.bridge_mlp_ratio, rates[i], bridge_scale, config.use_sub_ln)
            for i in range(depth1)
        )
        self.merge1 = ITPNPatchMerging(config, width1)
        self.stage2 = nn.ModuleList(
            ITPNMlpBlock(config, width2, config.bridge_mlp_ratio, rates[depth1 + i], bridge_scale, config.use_sub_ln)
            for i in range(depth2)
        )
        self.merge2 = ITPNPatchMerging(config, width2)
        if use_mask_token is None:
            use_mask_token = config.pretraining_target == "clip"
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width3)) if use_mask_token else None
        grid = config.resolved_position_embedding_grid_size
        self.position_embeddings = (
            nn.Parameter(torch.zeros(1, grid * grid, width3)) if config.use_absolute_position_embeddings else None
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def position_embeddings_for(self, grid_size: tuple[int, int], dropped: bool) -> torch.Tensor:
        """(1, h*w, C) absolute position embeddings for a (h, w) token grid.

        Resized like the original (bicubic with DINO's `(h + 0.1) / G` scale factor, which checkpoints were trained
        and fixtures produced with), whenever the grid is not the stored one.
        """
        stored = self.config.resolved_position_embedding_grid_size
        resample = tuple(grid_size) != (stored, stored)
        # The original resizes whenever the token count differs from the stored one, i.e. also after dropping.
        resample = resample or (dropped and self.config.resample_position_embeddings_on_drop)
        if not resample:
            return self.position_embeddings
        return interpolate_pos_embed(
            self.position_embeddings, stored, tuple(grid_size), mode="bicubic", legacy_scale_factor=True
        )

    def resize_checkpoint_position_table(self, name: str, table: torch.Tensor) -> torch.Tensor:
        """(1, n, C) position embeddings of a checkpoint of another image size → the stored grid of this config.

        Size-based bicubic, as the fine-tuning scripts of MAE-style models resize checkpoints.
        """
        if not self.config.interpolate_pos_encoding_on_load or name != "position_embeddings":
            return table
        stored = self.config.resolved_position_embedding_grid_size
        old_grid = grid_of_size(table.shape[1], like=stored)
        return interpolate_pos_embed(table, old_grid, stored, mode="bicubic")

    def forward(
        self,
        pixel_values: torch.Tensor,
        ids_keep: torch.Tensor | None = None,
        bool_masked_pos: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], tuple[int, int]]:
        """Embeds the visible patches.

        Args:
            pixel_values: (B, C, H, W).
            ids_keep: (B, K) patches to keep (token dropping), ascending.
            bool_masked_pos: (B, N) patches whose stage-3 token is replaced by the mask token (CLIP target).

        Returns:
            Stage-3 input tokens (B, L, C), the stage-1 and stage-2 outputs (B, L, 4, 4, C/4) and (B, L, 2, 2, C/2),
            and the (h, w) patch grid.
        """
        hidden_states, grid_size = self.patch_embeddings(pixel_values)
        if ids_keep is not None:
            hidden_states = gather_tokens(hidden_states, ids_keep)
        for block in self.stage1:
            hidden_states = block(hidden_states)
        stage1_output = hidden_states
        hidden_states = self.merge1(hidden_states)
        for block in self.stage2:
            hidden_states = block(hidden_states)
        stage2_output = hidden_states
        hidden_states = self.merge2(hidden_states)[:, :, 0, 0, :]

        if bool_masked_pos is not None:
            if self.mask_token is None:
                raise ValueError(
                    "Mask-token replacement needs the mask token of the CLIP target: only ITPNModel and "
                    "ITPNForPreTraining with config.pretraining_target='clip' build one (the classifier and the "
                    "backbone never mask)."
                )
            weight = bool_masked_pos.unsqueeze(-1).to(hidden_states.dtype)
            hidden_states = hidden_states * (1.0 - weight) + self.mask_token.to(hidden_states.dtype) * weight
        if self.position_embeddings is not None:
            position_embeddings = self.position_embeddings_for(grid_size, dropped=ids_keep is not None)
            if ids_keep is not None:
                position_embeddings = gather_tokens(
                    position_embeddings.expand(hidden_states.shape[0], -1, -1), ids_keep
                )
            hidden_states = hidden_states + position_embeddings.to(hidden_states.dtype)
        return self.dropout(hidden_states), (stage1_output, stage2_output), grid_size


class ITPNEncoder(nn.Module):
    """Stage 3: a stack of attention blocks on the 1/16 tokens."""

    def __init__(self, config: ITPNConfig) -> None:
        super().__init__()
        rates = drop_path_rates(config)[config.stage1_depth + config.stage2_depth :]
        self.layers = nn.ModuleList(
            ITPNLayer(
                config,
                config.hidden_size,
                config.num_attention_heads,
                config.mlp_ratio,
                rates[i],
                use_relative_position_bias=config.use_relative_position_bias,
                layer_scale_init_value=config.layer_scale_init_value,
                use_swiglu=config.use_swiglu,
                use_sub_ln=config.use_sub_ln,
            )
            for i in range(config.num_hidden_layers)
        )

    def forward(
        self,
        hidden_states: torch.Tensor,
        relative_position_index: torch.Tensor | None = None,
        grid_size: tuple[int, int] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        """(B, L, C) tokens → (B, L, C); hidden states and attentions are recorded by `capture_outputs` hooks."""
        for layer in self.layers:
            hidden_states, _ = layer(hidden_states, relative_position_index, grid_size, **kwargs)
        return hidden_states


class ITPNPyramid(nn.Module):
    """The integral feature pyramid: top-down from stage 3 with lateral stage-2/stage-1 features, inside each patch.

    P16 = proj(stage 3); P8 = blocks(split(stage 3) + lateral(stage 2)); P4 = blocks(split(P8) + lateral(stage 1));
    every level then passes one more MLP block.
    """

    def __init__(self, config: ITPNConfig) -> None:
        super().__init__()
        width1, width2, width3 = config.stage_widths
        fpn_dim = config.fpn_dim

        def mlp_blocks(count: int) -> nn.ModuleList:
            return nn.ModuleList(ITPNMlpBlock(config, fpn_dim, config.mlp_ratio) for _ in range(count))

        self.stride16_proj = nn.Linear(width3, fpn_dim) if width3 != fpn_dim else None
        self.stride8_split = ITPNPatchSplit(config, width3, fpn_dim)
        self.stride8_lateral = nn.Linear(width2, fpn_dim, bias=False)
        self.stride8_blocks = mlp_blocks(config.fpn_depth)
        self.stride4_split = ITPNPatchSplit(config, fpn_dim, fpn_dim)
        self.stride4_lateral = nn.Linear(width1, fpn_dim, bias=False)
        self.stride4_blocks = mlp_blocks(config.fpn_depth)
        # One output block per level, finest first (strides 4, 8, 16).
        self.output_blocks = mlp_blocks(3)

    def forward(
        self, stage3_tokens: torch.Tensor, stage2_output: torch.Tensor, stage1_output: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L, C), (B, L, 2, 2, C/2), (B, L, 4, 4, C/4) -> levels (B, L, s, s, F) for strides 4, 8, 16."""
        stage3 = stage3_tokens[:, :, None, None, :]
        level16 = self.stride16_proj(stage3) if self.stride16_proj is not None else stage3
        level8 = self.stride8_split(stage3) + self.stride8_lateral(stage2_output)
        for block in self.stride8_blocks:
            level8 = block(level8)
        level4 = self.stride4_split(level8) + self.stride4_lateral(stage1_output)
        for block in self.stride4_blocks:
            level4 = block(level4)
        levels = (level4, level8, level16)
        return tuple(block(level) for block, level in zip(self.output_blocks, levels))


class ITPNPooler(nn.Module):
    """Mean over tokens, then LayerNorm when `use_mean_pooling` (iTPN); plain mean otherwise (Fast-iTPN)."""

    def __init__(self, config: ITPNConfig) -> None:
        super().__init__()
        self.layernorm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.use_mean_pooling else None
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        pooled = hidden_states.mean(dim=1)
        return self.layernorm(pooled) if self.layernorm is not None else pooled


# ----------------------------------------------------------------------------------------------------------------
# Pre-training heads
# ----------------------------------------------------------------------------------------------------------------


class ITPNLevelProjection(nn.Module):
    """LayerNorm + linear map of one pyramid level, flattened per patch: (B, L, s, s, F) -> (B, L, s*s*out_dim)."""

    def __init__(self, config: ITPNConfig, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.fpn_dim, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.fpn_dim, out_dim)

    def forward(self, level: torch.Tensor) -> torch.Tensor:
        return self.dense(self.norm(level)).flatten(2)


class ITPNPixelDecoder(nn.Module):
    """MAE-style decoder fed by all pyramid levels.

    Each level is projected to `decoder_hidden_size / (s*s)` per sub-position (so every level gives D values per
    patch), mask tokens fill the dropped patches of every level, the levels and fixed sin-cos positions are summed,
    and a stack of attention blocks predicts the pixels of every patch.
    """

    def __init__(self, config: ITPNConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.decoder_hidden_size
        self.level_projections = nn.ModuleList(ITPNLevelProjection(config, dim // (s * s)) for s in LEVEL_SIDES)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        # Fixed sin-cos positions, stored (as the original) so that checkpoints carry them.
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.grid_size**2, dim), requires_grad=False)
        self.layers = nn.ModuleList(
            ITPNLayer(config, dim, config.decoder_num_attention_heads, config.decoder_mlp_ratio)
            for _ in range(config.decoder_num_hidden_layers)
        )
        self.layernorm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.predictor = nn.Linear(dim, config.patch_size**2 * config.num_channels)

    def _positions(self, grid_size: tuple[int, int]) -> torch.Tensor:
        if tuple(grid_size) == (self.config.grid_size, self.config.grid_size):
            return self.position_embeddings
        table = get_2d_sincos_pos_embed(self.position_embeddings.shape[-1], grid_size)
        return table.to(self.position_embeddings).unsqueeze(0)

    def resize_checkpoint_position_table(self, name: str, table: torch.Tensor) -> torch.Tensor:
        """The fixed sin-cos table of a checkpoint of another image size is recomputed for this config's grid."""
        if not self.config.interpolate_pos_encoding_on_load or name != "position_embeddings":
            return table
        return get_2d_sincos_pos_embed(table.shape[-1], self.config.grid_size).to(table.dtype).unsqueeze(0)

    def forward(
        self, pyramid_features: tuple[torch.Tensor, ...], ids_restore: torch.Tensor, grid_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Levels (B, K, s, s, F) of the visible patches; ids_restore (B, N). Returns hidden (B, N, D), pixels."""
        batch, num_visible = pyramid_features[0].shape[:2]
        num_tokens = ids_restore.shape[1]

        def fill(tokens: torch.Tensor) -> torch.Tensor:
            mask_tokens = self.mask_token.to(tokens.dtype).expand(batch, num_tokens - num_visible, -1)
            return gather_tokens(torch.cat([tokens, mask_tokens], dim=1), ids_restore)

        level4, level8, level16 = (fill(proj(level)) for proj, level in zip(self.level_projections, pyramid_features))
        hidden_states = level16 + self._positions(grid_size).to(level16.dtype) + level8 + level4
        for layer in self.layers:
            hidden_states, _ = layer(hidden_states)
        hidden_states = self.layernorm(hidden_states)
        return hidden_states, self.predictor(hidden_states)


class ITPNFeatureHead(nn.Module):
    """CLIP-target main head: pyramid levels fused per token (projected to C/(s*s), summed), LayerNorm, linear."""

    def __init__(self, config: ITPNConfig) -> None:
        super().__init__()
        dim = config.hidden_size
        self.level_projections = nn.ModuleList(ITPNLevelProjection(config, dim // (s * s)) for s in LEVEL_SIDES)
        self.layernorm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.predictor = nn.Linear(dim, config.teacher_dim)

    def forward(self, pyramid_features: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Levels (B, N, s, s, F) -> fused hidden (B, N, C) and predictions (B, N, teacher_dim)."""
        level4, level8, level16 = (proj(level) for proj, level in zip(self.level_projections, pyramid_features))
        hidden_states = self.layernorm(level16 + level8 + level4)
        return hidden_states, self.predictor(hidden_states)


class ITPNAuxiliaryHead(nn.Module):
    """CLIP-target auxiliary branch: extra attention blocks on an intermediate stage-3 output, LayerNorm, linear."""

    def __init__(self, config: ITPNConfig) -> None:
        super().__init__()
        rates = drop_path_rates(config)
        offset = config.stage1_depth + config.stage2_depth + config.resolved_aux_layer_index
        self.layers = nn.ModuleList(
            ITPNLayer(
                config,
                config.hidden_size,
                config.num_attention_heads,
                config.mlp_ratio,
                rates[min(offset + i, len(rates) - 1)],
                layer_norm_eps=config.aux_layer_norm_eps,
                use_relative_position_bias=config.use_relative_position_bias,
                layer_scale_init_value=config.layer_scale_init_value,
            )
            for i in range(config.num_aux_layers)
        )
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.predictor = nn.Linear(config.hidden_size, config.teacher_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        relative_position_index: torch.Tensor | None,
        grid_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        for layer in self.layers:
            hidden_states, _ = layer(hidden_states, relative_position_index, grid_size)
        return self.predictor(self.layernorm(hidden_states))


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


class ITPNPreTrainedModel(PreTrainedModel):
    config: ITPNConfig
    base_model_prefix = "itpn"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["ITPNEmbeddings", "ITPNLayer", "ITPNPyramid"]
    _supports_sdpa = True
    # The relative-position bias (CLIP-target and HiViT checkpoints) is an additive float mask, which flash attention
    # cannot take; flex attention is not verified.
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = True
    # Stage-3 blocks only: the pixel decoder and the auxiliary CLIP blocks run outside `ITPNModel.forward`.
    _can_record_outputs = {"hidden_states": ITPNLayer, "attentions": ITPNSelfAttention}

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, ITPNEmbeddings):
            if module.mask_token is not None:
                init.trunc_normal_(module.mask_token, std=std)
            if module.position_embeddings is not None:
                if self.config.pretraining_target == "pixel":
                    # MAE initialisation: sin-cos values, still trainable.
                    grid = self.config.resolved_position_embedding_grid_size
                    table = get_2d_sincos_pos_embed(module.position_embeddings.shape[-1], grid)
                    init.copy_(module.position_embeddings, table.unsqueeze(0))
                else:
                    init.trunc_normal_(module.position_embeddings, std=std)
        elif isinstance(module, ITPNSelfAttention):
            if module.relative_position_bias_table is not None:
                init.zeros_(module.relative_position_bias_table)
        elif isinstance(module, ITPNMlpBlock):
            if module.layer_scale is not None:
                init.constant_(module.layer_scale, self.config.layer_scale_init_value)
        elif isinstance(module, ITPNLayer):
            if module.layer_scale_1 is not None:
                init.constant_(module.layer_scale_1, self.config.layer_scale_init_value)
                init.constant_(module.layer_scale_2, self.config.layer_scale_init_value)
        elif isinstance(module, ITPNPixelDecoder):
            init.normal_(module.mask_token, std=std)
            table = get_2d_sincos_pos_embed(module.position_embeddings.shape[-1], self.config.grid_size)
            init.copy_(module.position_embeddings, table.unsqueeze(0))
        elif isinstance(module, ITPNModel) and module.relative_position_index is not None:
            init.copy_(
                module.relative_position_index, relative_position_index(self.config.grid_size, with_cls_token=False)
            )

    @property
    def num_lr_decay_layers(self) -> int:
        """Layer ids of `get_layer_id_for_lr_decay` run from 0 to this number minus one."""
        return self.config.stage1_depth + self.config.stage2_depth + self.config.num_hidden_layers + 2

    def get_layer_id_for_lr_decay(self, param_name: str) -> int:
        """Depth of a parameter for layer-wise learning-rate decay (the original iTPN fine-tuning rule).

        Embeddings get 0; every stage-1/2/3 block its position (1, 2, ...); a patch merge shares the id of the block
        before it; everything after stage 3 (final norm, pyramid, heads) gets `num_lr_decay_layers - 1`.
        """
        depth1, depth2 = self.config.stage1_depth, self.config.stage2_depth
        name = param_name.removeprefix(f"{self.base_model_prefix}.")
        if name.startswith("embeddings."):
            parts = name.split(".")
            if parts[1] == "stage1":
                return int(parts[2]) + 1
            if parts[1] == "merge1":
                return depth1
            if parts[1] == "stage2":
                return depth1 + int(parts[2]) + 1
            if parts[1] == "merge2":
                return depth1 + depth2
            return 0
        if name.startswith("encoder.layers."):
            return depth1 + depth2 + int(name.split(".")[2]) + 1
        return self.num_lr_decay_layers - 1

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters exempt from weight decay (biases and other 1-d tensors are left to the trainer).

        As the original (`no_weight_decay` + `no_weight_decay_keywords` of HiViT / iTPN): the absolute position
        embeddings and every relative-position bias table; and the mask tokens of the encoder and the pixel decoder,
        which, like position embeddings, are learned inputs rather than weights.
        """
        exempt = ("position_embeddings", "relative_position_bias_table", "mask_token")
        return {name for name, _ in self.named_parameters() if name.rsplit(".", 1)[-1] in exempt}


class ITPNModel(ITPNPreTrainedModel):
    """HiViT backbone (+ integral feature pyramid). Masks only when given `bool_masked_pos`.

    With the pixel target a mask *drops* the masked patches before stage 1 (outputs hold the K visible ones, in
    ascending patch order); with the CLIP target masked stage-3 tokens are *replaced* by the mask token.
    """

    # Loading a pre-training checkpoint drops its heads quietly, a classification checkpoint its classifier
    # (transformers also applies the patterns of this model to the classes that contain it).
    _keys_to_ignore_on_load_unexpected = [*PRETRAINING_HEAD_KEYS, CLASSIFIER_KEY]
    # The pooler's norm is new at fine-tuning time, as BEiT's mean-pooling norm: pre-training never builds it.
    _keys_to_ignore_on_load_missing = [POOLER_NORM_KEY]

    def __init__(
        self,
        config: ITPNConfig,
        add_pooling_layer: bool = True,
        add_pyramid: bool = True,
        use_mask_token: bool | None = None,
    ) -> None:
        r"""
        add_pooling_layer (`bool`): Build the mean-pooling head (classification).
        add_pyramid (`bool`): Build the feature pyramid (when `config.use_pyramid`).
        use_mask_token (`bool`, *optional*): Build the mask token; None: with the CLIP target. Heads that never mask
            (classifier, backbone) pass False, so that no parameter is left without gradient (as MVP's).
        """
        super().__init__(config)
        self.config = config
        self.embeddings = ITPNEmbeddings(config, use_mask_token=use_mask_token)
        self.encoder = ITPNEncoder(config)
        self.layernorm = (
            nn.Identity() if config.use_mean_pooling else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        )
        self.pyramid = ITPNPyramid(config) if add_pyramid and config.use_pyramid else None
        self.pooler = ITPNPooler(config) if add_pooling_layer else None
        if config.use_relative_position_bias:
            index = relative_position_index(config.grid_size, with_cls_token=False)
            self.register_buffer("relative_position_index", index, persistent=False)
        else:
            self.relative_position_index = None
        self.has_position_tables = config.use_absolute_position_embeddings or config.use_relative_position_bias
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def relative_position_index_for(
        self, grid_size: tuple[int, int], ids_keep: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """(1, N, N) relative-position index of a (h, w) grid, or (B, K, K) among the kept patches; None without
        the bias."""
        if self.relative_position_index is None:
            return None
        index = self.relative_position_index
        if tuple(grid_size) != (self.config.grid_size, self.config.grid_size):
            index = _cached_relative_position_index(tuple(grid_size)).to(index.device)
        if ids_keep is None:
            return index.unsqueeze(0)
        rows = index[ids_keep]  # (B, K, N)
        return torch.gather(rows, 2, ids_keep.unsqueeze(1).expand(-1, ids_keep.shape[1], -1))

    @strict_forward_kwargs
    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ITPNModelOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Images; height and width must be multiples of `config.patch_size`.
        bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_patches)`, *optional*):
            True = masked. Pixel target: masked patches are dropped (every row must mask the same number); CLIP
            target: their stage-3 tokens are replaced by the mask token.
        interpolate_pos_encoding (`bool`): Interpolate the position tables to the input's grid when it is not the one
            of `config.image_size` (absolute embeddings bicubic as the original, relative-position bias tables
            bilinear); without it such inputs are an error (models without position tables run at any size).
        """
        grid = patch_grid(pixel_values, self.config)
        if self.has_position_tables:
            check_position_grid(
                grid,
                self.config.grid_size,
                interpolate_pos_encoding=interpolate_pos_encoding or self.config.interpolate_pos_encoding,
                patch_size=self.config.patch_size,
            )
        ids_keep = replace_mask = None
        if bool_masked_pos is not None:
            bool_masked_pos = validate_bool_masked_pos(bool_masked_pos, pixel_values.shape[0], grid[0] * grid[1])
            if self.config.pretraining_target == "pixel":
                ids_keep = mask_to_ids(bool_masked_pos.to(pixel_values.device), require_visible=True).ids_keep
            else:
                replace_mask = bool_masked_pos.to(pixel_values.device)

        tokens, (stage1_output, stage2_output), grid_size = self.embeddings(
            pixel_values, ids_keep=ids_keep, bool_masked_pos=replace_mask
        )
        index = self.relative_position_index_for(grid_size, ids_keep)
        stage3_output = self.encoder(tokens, index, grid_size, **kwargs)
        sequence_output = self.layernorm(stage3_output)
        pyramid_features = (
            self.pyramid(stage3_output, stage2_output, stage1_output) if self.pyramid is not None else None
        )
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return ITPNModelOutput(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            stage_features=(stage1_output, stage2_output, stage3_output[:, :, None, None, :]),
            pyramid_features=pyramid_features,
        )


class ITPNBackbone(BackboneMixin, ITPNPreTrainedModel):
    """Multi-scale feature maps for detection/segmentation heads.

    Stages: `stem` (patch embedding, stride 4) and `stage1`..`stage5` (strides 4, 8, 16, 32, 64). With the pyramid,
    `"seg"` returns concat(pyramid level, backbone feature) and max-pools strides 32 and 64; `"det"` returns the
    pyramid levels (`fpn_dim` channels) and average-pools. Without the pyramid the backbone's own stage features are
    returned (pooled the same way beyond stride 16).
    """

    _keys_to_ignore_on_load_unexpected = [*PRETRAINING_HEAD_KEYS, MASK_TOKEN_KEY, CLASSIFIER_KEY, POOLER_NORM_KEY]

    def __init__(self, config: ITPNConfig) -> None:
        super().__init__(config)
        self.itpn = ITPNModel(config, add_pooling_layer=False, use_mask_token=False)
        width1, width2, width3 = config.stage_widths
        if not config.use_pyramid:
            level_channels = [width1, width2, width3]
        elif config.backbone_layout == "seg":
            level_channels = [config.fpn_dim + width1, config.fpn_dim + width2, config.fpn_dim + width3]
        else:
            level_channels = [config.fpn_dim] * 3
        extra = len(self.stage_names) - 4
        self.num_features = [width1, *level_channels, *[level_channels[-1]] * extra]
        self.post_init()

    @strict_forward_kwargs
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BackboneOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`): Images.
        interpolate_pos_encoding (`bool`): Accept inputs of another size than `config.image_size` (see `ITPNModel`).

        Returns feature maps (B, C_stage, H / stride, W / stride) for `config.out_features`; `hidden_states` holds the
        maps of every stage up to the last requested one, when asked for (built here, as conv backbones do; the
        attentions come from `ITPNModel`'s output capture).
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        grid = patch_grid(pixel_values, self.config)
        outputs = self.itpn(
            pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_attentions=output_attentions,
            **kwargs,
        )
        if outputs.pyramid_features is None:
            levels = outputs.stage_features
        elif self.config.backbone_layout == "seg":
            levels = tuple(torch.cat([p, s], dim=-1) for p, s in zip(outputs.pyramid_features, outputs.stage_features))
        else:
            levels = outputs.pyramid_features
        maps = [None] + [tokens_to_feature_map(level, grid) for level in levels]
        if "stem" in self.out_features or output_hidden_states:
            # The patch embedding before stage 1 (its cost is small, but only paid when the stem map is wanted).
            maps[0] = tokens_to_feature_map(self.itpn.embeddings.patch_embeddings(pixel_values)[0], grid)
        # Strides 32 and 64 are pooled only when asked for: small inputs have no stride-64 map.
        last_needed = max(self.stage_names.index(name) for name in self.out_features)
        reachable = self.config.last_stage_index_at(min(pixel_values.shape[-2:]))
        if last_needed > reachable:
            stage = self.stage_names[last_needed]
            need = self.config.patch_size * 2 ** (last_needed - self.stage_names.index("stage3"))
            raise ValueError(
                f"out_features includes {stage!r}, which needs inputs of at least {need} px a side (patch_size "
                f"{self.config.patch_size}, pooled down to stride {need}), got {tuple(pixel_values.shape[-2:])}. Fix: "
                f"feed larger images or build the backbone with out_features up to {self.stage_names[reachable]!r}."
            )
        pool = F.max_pool2d if self.config.backbone_layout == "seg" else F.avg_pool2d
        while len(maps) <= last_needed:
            maps.append(pool(maps[-1], kernel_size=2, stride=2))
        feature_maps = tuple(m for name, m in zip(self.stage_names, maps) if name in self.out_features)
        hidden_states = select_hidden_states(tuple(maps), output_hidden_states) if output_hidden_states else None
        return BackboneOutput(feature_maps=feature_maps, hidden_states=hidden_states, attentions=outputs.attentions)


class ITPNForPreTraining(TeacherHolderMixin, ITPNPreTrainedModel):
    """iTPN pre-training: the backbone and the pyramid are trained together.

    Pixel target: MAE-style masking with token dropping, the pixel decoder reads all pyramid levels, MSE on
    (normalised) pixels of masked patches. CLIP target: BEiT-style block masking with mask-token replacement, the fused
    pyramid and an auxiliary branch both regress a teacher's patch features (SmoothL1; on all tokens as the original).
    Optional masked feature modelling (`config.mfm_target`) regresses every pyramid level of a teacher ITPNModel
    (EMA or frozen, attached with `set_mfm_teacher`) at masked positions.

    Teachers are kept outside the module tree: `set_teacher` attaches the CLIP teacher (e.g. a `FrozenTeacher`),
    `set_mfm_teacher` the MFM teacher; both can be bypassed with precomputed `teacher_features` / `mfm_targets`.
    """

    def __init__(self, config: ITPNConfig) -> None:
        super().__init__(config)
        if not config.use_pyramid:
            raise ValueError("ITPNForPreTraining trains the feature pyramid: build it with config.use_pyramid=True.")
        self.itpn = ITPNModel(config, add_pooling_layer=False)
        if config.pretraining_target == "pixel":
            self.decoder = ITPNPixelDecoder(config)
            mfm_source_dim = config.decoder_hidden_size
        else:
            self.feature_head = ITPNFeatureHead(config)
            self.aux_head = ITPNAuxiliaryHead(config) if config.num_aux_layers > 0 else None
            mfm_source_dim = config.hidden_size
        teacher_width = config.mfm_teacher_dim or config.fpn_dim
        self.mfm_heads = (
            nn.ModuleList(nn.Linear(mfm_source_dim, s * s * teacher_width) for s in LEVEL_SIDES)
            if config.mfm_target is not None
            else None
        )
        self.post_init()

    # -- teachers ---------------------------------------------------------------------------------------------------

    @property
    def mfm_teacher(self) -> nn.Module | None:
        """The teacher ITPNModel (or EMATeacher around one) in the `"mfm"` slot that gives the MFM targets, or None."""
        return self.get_teacher(MFM_TEACHER)

    def set_mfm_teacher(self, teacher: nn.Module | None) -> None:
        """Attaches the MFM teacher to the `"mfm"` slot (`set_teacher(teacher, name="mfm")`): outside the module
        tree, never saved, trained or wrapped with the student, beside the CLIP teacher of the default slot.

        Args:
            teacher: `EMATeacher(model.itpn)` for `mfm_target="ema"`, a pre-trained `ITPNModel` with the pyramid for
                `"frozen"`; called on the unmasked pixels, it must return an output with `pyramid_features`.
        """
        self.set_teacher(teacher, name=MFM_TEACHER)

    def _mfm_targets_from_teacher(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.mfm_teacher is None:
            raise ValueError(
                f"config.mfm_target={self.config.mfm_target!r} needs teacher pyramid features: call "
                "`model.set_mfm_teacher(EMATeacher(model.itpn))` (or a frozen ITPNModel), or pass `mfm_targets`."
            )
        outputs = self.run_teacher(MFM_TEACHER, pixel_values)
        levels = getattr(outputs, "pyramid_features", outputs)
        if levels is None:
            raise ValueError("The MFM teacher returned no pyramid_features: it must be an ITPNModel with the pyramid.")
        return tuple(level.detach() for level in levels)

    # -- losses -----------------------------------------------------------------------------------------------------

    def _mfm_losses(
        self,
        source: torch.Tensor,
        mfm_targets: tuple[torch.Tensor, ...],
        bool_masked_pos: torch.Tensor,
    ) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
        if len(mfm_targets) != 3:
            raise ValueError(f"mfm_targets must hold 3 pyramid levels (strides 4, 8, 16), got {len(mfm_targets)}.")
        losses, predictions = {}, []
        for head, target, side, stride in zip(self.mfm_heads, mfm_targets, LEVEL_SIDES, LEVEL_STRIDES):
            expected = (source.shape[0], source.shape[1], side, side, head.out_features // (side * side))
            if tuple(target.shape) != expected:
                raise ValueError(
                    f"MFM target of the stride-{stride} level must have shape {expected} (B, N, s, s, F), got "
                    f"{tuple(target.shape)}."
                )
            if self.config.mfm_normalize_target:
                target = layer_norm_no_affine(target.float()).to(source.dtype)
            prediction = head(source)
            predictions.append(prediction)
            losses[f"mfm_stride{stride}"] = feature_regression_loss(
                prediction, target.flatten(2), bool_masked_pos, loss_type=self.config.mfm_loss_type
            )
        return losses, tuple(predictions)

    def _loss_weights(self) -> dict[str, float]:
        weights = {
            "pixel": self.config.pixel_loss_weight,
            "clip": self.config.clip_loss_weight,
            "clip_aux": self.config.clip_aux_loss_weight,
        }
        for stride, weight in zip(LEVEL_STRIDES, self.config.mfm_loss_weights):
            weights[f"mfm_stride{stride}"] = weight
        return weights

    def mask_generator(self, grid_size: tuple[int, int] | None = None) -> RandomMaskGenerator | BlockMaskGenerator:
        """The masking policy of this config, for the model's own masks and for data collators alike.

        Pixel target: MAE random masking (masked tokens are dropped); CLIP target: BEiT block masking. The count is
        `config.num_masking_patches` when set, else follows `config.mask_ratio` (`config.num_masked_for`).

        Args:
            grid_size: (h, w) patch grid of the inputs; defaults to the grid at `config.image_size`.

        Returns:
            A callable `(batch_size, generator=None) -> (B, h*w) bool` mask generator (True = masked).
        """
        grid = self.config.mask_grid(grid_size)
        num_tokens = grid[0] * grid[1]
        num_masked = self.config.num_masked_for(num_tokens)
        if self.config.pretraining_target == "pixel":
            return RandomMaskGenerator(num_tokens, num_masked=num_masked)
        return BlockMaskGenerator(
            grid,
            num_masked,
            min_block_tokens=self.config.mask_min_block_tokens,
            min_aspect=self.config.mask_min_aspect,
            max_aspect=self.config.mask_max_aspect,
        )

    def sample_mask(
        self, pixel_values: torch.Tensor, noise: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The (B, N) bool mask the model uses when given none (`mask_generator` for the input's grid).

        With `noise`, the same number of tokens is masked but MAE's rule picks them: the smallest noise stays visible.
        """
        grid = patch_grid(pixel_values, self.config)
        batch, num_tokens = pixel_values.shape[0], grid[0] * grid[1]
        if noise is not None:
            num_masked = self.config.num_masked_for(num_tokens)
            return random_mask(batch, num_tokens, num_masked=num_masked, noise=noise, device=pixel_values.device)
        return self.mask_generator(grid)(batch, generator=generator).to(pixel_values.device)

    @strict_forward_kwargs
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        teacher_features: torch.Tensor | None = None,
        teacher_pixel_values: torch.Tensor | None = None,
        mfm_targets: tuple[torch.Tensor, ...] | None = None,
        interpolate_pos_encoding: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ITPNForPreTrainingOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`): Images.
        bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_patches)`, *optional*):
            True = masked. Sampled when not given (random for the pixel target, block-wise for the CLIP target).
        noise (`torch.FloatTensor` of shape `(batch_size, num_patches)`, *optional*):
            Makes the random mask reproducible: the patches with the smallest noise stay visible (MAE rule).
        teacher_features (`torch.FloatTensor` of shape `(batch_size, num_patches, teacher_dim)`, *optional*):
            Precomputed CLIP-target features, used as given (otherwise the attached teacher computes them and, with
            `config.normalize_teacher_features`, they are LayerNorm-ed without affine as by the original teacher).
        teacher_pixel_values (`torch.FloatTensor`, *optional*): Pixels prepared for the teacher.
        mfm_targets (tuple of 3 tensors `(batch_size, num_patches, s, s, F)`, *optional*):
            Precomputed teacher pyramid levels (strides 4, 8, 16) for masked feature modelling.
        interpolate_pos_encoding (`bool`): Accept inputs of another size than `config.image_size` (see `ITPNModel`).
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        grid = patch_grid(pixel_values, self.config)
        batch = pixel_values.shape[0]
        if bool_masked_pos is None:
            bool_masked_pos = self.sample_mask(pixel_values, noise=noise)
        bool_masked_pos = validate_bool_masked_pos(bool_masked_pos, batch, grid[0] * grid[1]).to(pixel_values.device)

        is_clip = self.config.pretraining_target == "clip"
        need_aux_input = is_clip and self.aux_head is not None
        outputs = self.itpn(
            pixel_values,
            bool_masked_pos=bool_masked_pos,
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_hidden_states=True if need_aux_input else output_hidden_states,
            output_attentions=output_attentions,
            **kwargs,
        )
        losses: dict[str, torch.Tensor] = {}
        aux_logits = None
        if not is_clip:
            ids_restore = mask_to_ids(bool_masked_pos).ids_restore
            mfm_source, logits = self.decoder(outputs.pyramid_features, ids_restore, grid)
            targets = patchify(pixel_values, self.config.patch_size).to(logits.dtype)
            losses["pixel"] = pixel_reconstruction_loss(
                logits, targets, bool_masked_pos, normalize_target=self.config.norm_pix_loss
            )
        else:
            mfm_source, logits = self.feature_head(outputs.pyramid_features)
            if self.aux_head is not None:
                aux_input = outputs.hidden_states[self.config.resolved_aux_layer_index + 1]
                aux_logits = self.aux_head(aux_input, self.itpn.relative_position_index_for(grid), grid)
            if teacher_features is None:
                teacher_features = self._run_teacher(pixel_values, teacher_pixel_values)
                if self.config.normalize_teacher_features:
                    teacher_features = layer_norm_no_affine(teacher_features.float())
            expected = (batch, grid[0] * grid[1], self.config.teacher_dim)
            if tuple(teacher_features.shape) != expected:
                raise ValueError(
                    f"teacher_features must have shape (batch_size, num_patches, teacher_dim) = {expected}, got "
                    f"{tuple(teacher_features.shape)}: the teacher's patch grid must match the student's and its "
                    "width config.teacher_dim."
                )
            teacher_features = teacher_features.to(logits.dtype)
            counted = None if self.config.clip_loss_on_all_tokens else bool_masked_pos
            losses["clip"] = feature_regression_loss(logits, teacher_features, counted, loss_type="smooth_l1")
            if aux_logits is not None:
                losses["clip_aux"] = feature_regression_loss(
                    aux_logits, teacher_features, counted, loss_type="smooth_l1"
                )

        mfm_logits = None
        if self.mfm_heads is not None:
            if mfm_targets is None:
                mfm_targets = self._mfm_targets_from_teacher(pixel_values)
            mfm_losses, mfm_logits = self._mfm_losses(mfm_source, tuple(mfm_targets), bool_masked_pos)
            losses.update(mfm_losses)

        weights = {name: weight for name, weight in self._loss_weights().items() if name in losses}
        return ITPNForPreTrainingOutput(
            loss=weighted_total(losses, weights),
            losses=losses,
            logits=logits,
            aux_logits=aux_logits,
            mfm_logits=mfm_logits,
            bool_masked_pos=bool_masked_pos,
            hidden_states=select_hidden_states(outputs.hidden_states, output_hidden_states)
            if output_hidden_states
            else None,
            attentions=outputs.attentions,
        )


class ITPNForImageClassification(ITPNPreTrainedModel):
    """HiViT / iTPN / Fast-iTPN classifier: stage-3 tokens mean-pooled (see `use_mean_pooling`), then a linear head.

    The pyramid is not built: classification fine-tuning of the original drops it too.
    """

    # Pre-training checkpoints also carry the pyramid and the mask token, which the classifier does not build.
    _keys_to_ignore_on_load_unexpected = [*PRETRAINING_HEAD_KEYS, MASK_TOKEN_KEY, r"^itpn\.pyramid\."]

    def __init__(self, config: ITPNConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.itpn = ITPNModel(config, add_pooling_layer=True, add_pyramid=False, use_mask_token=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    @strict_forward_kwargs
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*): Class indices (or regression targets).
        interpolate_pos_encoding (`bool`): Accept inputs of another size than `config.image_size` (see `ITPNModel`).
        """
        outputs = self.itpn(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        logits = self.classifier(outputs.pooler_output)
        loss = self.loss_function(labels, logits, self.config, **kwargs) if labels is not None else None
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


# `from_pretrained` fits position tables saved at another image size to the configured grid (see
# `ITPNConfig.interpolate_pos_encoding_on_load`).
register_position_table_resizing(ITPNConfig.model_type)

__all__ = [
    "ITPNBackbone",
    "ITPNForImageClassification",
    "ITPNForPreTraining",
    "ITPNForPreTrainingOutput",
    "ITPNModel",
    "ITPNModelOutput",
    "ITPNPreTrainedModel",
    "patch_grid",
    "tokens_to_feature_map",
]
