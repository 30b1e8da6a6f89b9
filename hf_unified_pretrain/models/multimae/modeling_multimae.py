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
"""MultiMAE: Multi-modal Multi-task Masked Autoencoders (Bachmann, Mizrahi, Atanov, Zamir; ECCV 2022).

Every modality (RGB, depth, a semantic map stored at 1/4 resolution, ...) is cut into patches on the same token
grid by its own input adapter, which adds a fixed 2-D sin-cos position table (row coordinate in the first half of the
channels: MoCo-v3's convention, the halves swapped compared with MAE). The tokens of the given modalities are
concatenated, a Dirichlet draw splits a fixed visible budget across the modalities (98 of 3x196 released), the
encoder (a plain pre-norm ViT without a final norm) sees only the visible tokens followed by the learned global
token(s) LAST, and one small decoder per task rebuilds its modality: its queries are that task's tokens (visible
ones projected from the encoder, masked ones a mask token) plus task and position embeddings, which cross-attend to
the visible encoder tokens before a few self-attention blocks. Losses are scored on masked patches only: MSE on RGB,
MSE on per-patch normalised RGB (the extra "norm_rgb" decoder), L1 on per-image standardised depth and
cross-entropy on the semantic map.

Downstream (the original's MultiViT): the same encoder on all tokens of any non-empty subset of the modalities; a
mean-pooled linear classifier, the ConvNeXt segmentation adapter, and a backbone whose stage maps feed UperNet or
DPT (see `MultiMAEBackbone`).
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.backbone_utils import BackboneMixin, filter_output_hidden_states
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BackboneOutput, ImageClassifierOutput, SemanticSegmenterOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from ...layers import DropPath, eager_attention_forward, get_2d_sincos_pos_embed
from ...masking import dirichlet_multimodal_mask, gather_tokens, mask_to_ids, validate_bool_masked_pos
from ...objectives import weighted_total
from ...objectives.multimodal import masked_dense_loss
from .configuration_multimae import NORM_RGB, ModalitySpec, MultiMAEConfig


@dataclass
class MultiMAEModelOutput(ModelOutput):
    """Output of `MultiMAEModel`.

    Args:
        last_hidden_state: (B, K + G, C) encoder tokens: the K encoded patch tokens (all of them, modality after
            modality in `config.input_modalities` order, or the visible ones when a mask was given), then the G
            global tokens.
        pooler_output: (B, C) mean of the K patch tokens (the global tokens left out), the image's feature for
            `pipeline("image-feature-extraction", pool=True)`, kNN and linear probes.
        bool_masked_pos: (B, N) bool over the concatenated patch tokens of the given modalities, when masked.
        ids_keep: (B, K) indices (into the N concatenated tokens) of the encoded tokens, when masked.
        ids_restore: (B, N) permutation restoring [encoded, masked] to the token order, when masked.
        hidden_states: Embeddings output and every block's output, when requested.
        attentions: Attention weights of every block, when requested (eager attention).
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    bool_masked_pos: torch.BoolTensor | None = None
    ids_keep: torch.LongTensor | None = None
    ids_restore: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MultiMAEForPreTrainingOutput(ModelOutput):
    """Output of `MultiMAEForPreTraining`.

    Args:
        loss: Weighted total of `losses`.
        losses: One scalar per pre-training task that had a target ("rgb", "norm_rgb", "depth", "semseg", ...).
        logits: Predictions per task: (B, C, H_t, W_t) at the task's own resolution (class logits for
            segmentation tasks, at 1/4 resolution for the original's semseg).
        bool_masked_pos: Per input modality, (B, N) bool, True = masked.
        hidden_states: Encoder hidden states (visible + global tokens), when requested.
        attentions: Encoder attention weights, when requested.
    """

    loss: torch.FloatTensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    logits: dict[str, torch.Tensor] | None = None
    bool_masked_pos: dict[str, torch.Tensor] | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


# ------------------------------------------------------------------------------------------------------------------
# Input adapters
# ------------------------------------------------------------------------------------------------------------------


def _sincos_table(dim: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """(1, dim, h, w) fixed 2-D sin-cos table with the row coordinate in the first half (MultiMAE/MoCo-v3)."""
    table = get_2d_sincos_pos_embed(dim, grid_size, row_first=True)
    return table.reshape(grid_size[0], grid_size[1], dim).permute(2, 0, 1).unsqueeze(0)


def _resize_table(table: torch.Tensor, grid_size: tuple[int, int], mode: str) -> torch.Tensor:
    """(1, D, h, w) table -> (1, h'*w', D) tokens, resized as the original does for other resolutions."""
    if tuple(table.shape[-2:]) != tuple(grid_size):
        kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
        table = F.interpolate(table, size=grid_size, mode=mode, **kwargs)
    return table.flatten(2).transpose(1, 2)


def _visible_patches(values: torch.Tensor, patch: int, sample: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """The p x p patches of (B, C, H, W) values (or (B, H, W) labels) at (sample, token) pairs -> (R, C, p, p) (or
    (R, p, p)): only the selected patches are copied."""
    grid_w = values.shape[-1] // patch
    row, col = token // grid_w, token % grid_w
    if values.dim() == 3:
        return values.reshape(values.shape[0], -1, patch, grid_w, patch)[sample, row, :, col]
    batch, channels = values.shape[:2]
    return values.reshape(batch, channels, -1, patch, grid_w, patch)[sample, :, row, :, col]


class MultiMAEPatchEmbeddings(nn.Module):
    """Input adapter of an image or depth modality: p x p patches -> tokens, plus the fixed sin-cos positions
    (bicubic-resized for other resolutions, as the original)."""

    def __init__(self, config: MultiMAEConfig, spec: ModalitySpec) -> None:
        super().__init__()
        self.spec = spec
        self.patch_size = max(1, config.patch_size // spec.stride_level)
        self.projection = nn.Conv2d(
            spec.num_channels, config.hidden_size, kernel_size=self.patch_size, stride=self.patch_size
        )
        # Fixed like the original (a frozen parameter, so converted checkpoints load it by name).
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, config.hidden_size, *config.grid_size), requires_grad=False
        )

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        tokens = self.projection(values).flatten(2).transpose(1, 2)
        grid = (values.shape[-2] // self.patch_size, values.shape[-1] // self.patch_size)
        return tokens + _resize_table(self.position_embeddings, grid, "bicubic").to(tokens.dtype)

    def embed_visible(self, values: torch.Tensor, sample: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """Tokens of the patches at (sample, token) pairs only, (R,) each -> (R, C): `forward(values)[sample, token]`
        without projecting the patches the encoder drops."""
        patches = _visible_patches(values, self.patch_size, sample, token).flatten(1)
        tokens = F.linear(patches, self.projection.weight.flatten(1), self.projection.bias)
        grid = (values.shape[-2] // self.patch_size, values.shape[-1] // self.patch_size)
        return tokens + _resize_table(self.position_embeddings, grid, "bicubic")[0, token].to(tokens.dtype)


class MultiMAESegmentationEmbeddings(nn.Module):
    """Input adapter of a semantic map: a learned class embedding per pixel, p x p patches of it -> tokens, plus the
    fixed sin-cos positions (bilinear-resized, as the original). Pixels holding `ignore_index` embed to zero."""

    def __init__(self, config: MultiMAEConfig, spec: ModalitySpec) -> None:
        super().__init__()
        self.spec = spec
        self.patch_size = max(1, config.patch_size // spec.stride_level)
        self.class_embeddings = nn.Embedding(spec.num_classes, spec.class_embed_dim)
        self.projection = nn.Conv2d(
            spec.class_embed_dim, config.hidden_size, kernel_size=self.patch_size, stride=self.patch_size
        )
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, config.hidden_size, *config.grid_size), requires_grad=False
        )

    def _embed_labels(self, labels: torch.Tensor) -> torch.Tensor:
        ignored = labels == self.spec.ignore_index
        embedded = self.class_embeddings(labels.masked_fill(ignored, 0))
        return embedded.masked_fill(ignored.unsqueeze(-1), 0.0)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        tokens = self.projection(self._embed_labels(labels).permute(0, 3, 1, 2)).flatten(2).transpose(1, 2)
        grid = (labels.shape[-2] // self.patch_size, labels.shape[-1] // self.patch_size)
        return tokens + _resize_table(self.position_embeddings, grid, "bilinear").to(tokens.dtype)

    def embed_visible(self, labels: torch.Tensor, sample: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """Tokens of the patches at (sample, token) pairs only, (R,) each -> (R, C): `forward(labels)[sample, token]`
        without embedding the pixels of dropped patches."""
        embedded = self._embed_labels(_visible_patches(labels, self.patch_size, sample, token))  # (R, p, p, E)
        tokens = F.linear(
            embedded.permute(0, 3, 1, 2).flatten(1), self.projection.weight.flatten(1), self.projection.bias
        )
        grid = (labels.shape[-2] // self.patch_size, labels.shape[-1] // self.patch_size)
        return tokens + _resize_table(self.position_embeddings, grid, "bilinear")[0, token].to(tokens.dtype)


# ------------------------------------------------------------------------------------------------------------------
# Transformer blocks (encoder and decoders)
# ------------------------------------------------------------------------------------------------------------------


_KNOWN_KWARGS = frozenset(TransformersKwargs.__annotations__) | {"return_dict", "use_cache"}


def _check_kwargs(kwargs: dict) -> None:
    """Unknown keyword arguments are an error, so that a misspelt `bool_masked_pos` cannot pass silently."""
    unknown = sorted(set(kwargs) - _KNOWN_KWARGS)
    if unknown:
        raise TypeError(
            f"Unexpected keyword argument(s) {unknown} for a MultiMAE model: check the spelling against the "
            "forward's arguments (pixel_values, modalities, bool_masked_pos, ...)."
        )


def _attend(module: nn.Module, query, key, value, config: MultiMAEConfig, dropout: float, **kwargs):
    """(B, heads, T, d) query/key/value through the configured attention implementation -> (B, T, heads * d)."""
    attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
        config._attn_implementation, eager_attention_forward
    )
    output, weights = attention_interface(
        module,
        query,
        key,
        value,
        None,
        dropout=dropout if module.training else 0.0,
        scaling=module.scaling,
        **kwargs,
    )
    return output.reshape(*output.shape[:2], -1).contiguous(), weights


class MultiMAEFusedLinear(nn.Linear):
    """A Linear holding `num_parts` projections side by side (q, k, v), initialised as separate xavier-uniform
    linears like the original (the init is keyed on this class: modules without parameters of their own, such as
    the attention blocks, are never visited by transformers' weight initialisation)."""

    def __init__(self, in_features: int, out_features: int, num_parts: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features * num_parts, bias=bias)
        self.num_parts = num_parts


class MultiMAESelfAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (the original's layout)."""

    def __init__(self, config: MultiMAEConfig, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.qkv = MultiMAEFusedLinear(dim, dim, 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, hidden_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]):
        batch, length, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(batch, length, 3, self.num_heads, self.head_dim)
        # unbind, not qkv[0]/qkv[1]/qkv[2] (indexing backpropagates three zero-filled full-size buffers), and along
        # the (B, T, 3, heads, d) layout, so the backward stacks the gradients straight into the Linear's layout.
        query, key, value = (part.transpose(1, 2) for part in qkv.unbind(2))
        output, weights = _attend(
            self, query, key, value, self.config, self.config.attention_probs_dropout_prob, **kwargs
        )
        return self.proj(output), weights


class MultiMAEDecoderSelfAttention(MultiMAESelfAttention):
    """Self-attention of the decoders' blocks (a separate class so encoder outputs are recorded alone)."""


class MultiMAECrossAttention(nn.Module):
    """Queries of one task attend to the visible encoder tokens (the decoders' first step)."""

    def __init__(self, config: MultiMAEConfig) -> None:
        super().__init__()
        dim, self.num_heads = config.decoder_hidden_size, config.decoder_num_attention_heads
        self.config = config
        self.head_dim = dim // self.num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = MultiMAEFusedLinear(dim, dim, 2, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, num_queries, _ = queries.shape
        query = self.q(queries).reshape(batch, num_queries, self.num_heads, self.head_dim).transpose(1, 2)
        key_value = self.kv(context).reshape(batch, context.shape[1], 2, self.num_heads, self.head_dim)
        key, value = (part.transpose(1, 2) for part in key_value.unbind(2))
        output, _ = _attend(self, query, key, value, self.config, 0.0)
        return self.proj(output)


class MultiMAEMLP(nn.Module):
    def __init__(self, config: MultiMAEConfig, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.activation_fn(self.fc1(hidden_states))))


class MultiMAELayer(GradientCheckpointingLayer):
    """Pre-norm encoder block: x + Attn(LN(x)), then x + MLP(LN(x)), with stochastic depth."""

    attention_class = MultiMAESelfAttention

    def __init__(
        self,
        config: MultiMAEConfig,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.layernorm_before = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = self.attention_class(config, dim, num_heads, qkv_bias)
        self.attention_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layernorm_after = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = MultiMAEMLP(config, dim, mlp_ratio)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0.0 else nn.Identity()

    def forward(self, hidden_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> torch.Tensor:
        attention_output, _ = self.attention(self.layernorm_before(hidden_states), **kwargs)
        hidden_states = hidden_states + self.drop_path(self.attention_dropout(attention_output))
        return hidden_states + self.drop_path(self.mlp(self.layernorm_after(hidden_states)))


class MultiMAEDecoderLayer(MultiMAELayer):
    """A decoder's self-attention block (same structure, decoder width)."""

    attention_class = MultiMAEDecoderSelfAttention


class MultiMAEEncoder(nn.Module):
    def __init__(self, config: MultiMAEConfig) -> None:
        super().__init__()
        depth = config.num_hidden_layers
        rates = [config.drop_path_rate * index / max(depth - 1, 1) for index in range(depth)]
        self.layer = nn.ModuleList(
            [
                MultiMAELayer(
                    config, config.hidden_size, config.num_attention_heads, config.mlp_ratio, config.qkv_bias, rate
                )
                for rate in rates
            ]
        )

    def forward(self, hidden_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> torch.Tensor:
        for layer in self.layer:
            hidden_states = layer(hidden_states, **kwargs)
        return hidden_states


# ------------------------------------------------------------------------------------------------------------------
# Pre-training decoder (the original's SpatialOutputAdapter)
# ------------------------------------------------------------------------------------------------------------------


class MultiMAESpatialDecoder(nn.Module):
    """Rebuilds one task's map from the visible encoder tokens.

    Context = encoder tokens projected to the decoder width, masked positions filled with a mask token, plus a
    learned embedding of the modality each token came from and the decoder's own sin-cos positions; only the visible
    context tokens (and the global tokens) are attended to. Queries = this task's slice of that context (when the
    task is an input) or mask token + position + task embedding. One cross-attention + MLP, then
    `decoder_num_hidden_layers` self-attention blocks and a linear projection to the patch pixels/logits.
    """

    def __init__(self, config: MultiMAEConfig, task: str, source: ModalitySpec) -> None:
        super().__init__()
        dim = config.decoder_hidden_size
        self.task, self.source = task, source
        self.use_task_queries = config.decoder_use_task_queries
        self.patch_size = max(1, config.patch_size // source.stride_level)
        self.out_channels = source.out_channels
        self.proj_context = nn.Linear(config.hidden_size, dim)
        self.task_embeddings = nn.ParameterDict(
            {name: nn.Parameter(torch.zeros(1, 1, dim)) for name in config.input_modalities}
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position_embeddings = nn.Parameter(torch.zeros(1, dim, *config.grid_size), requires_grad=False)
        if config.decoder_use_cross_attention:
            self.query_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
            self.context_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
            self.cross_attention = MultiMAECrossAttention(config)
            self.out_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
            self.mlp = MultiMAEMLP(config, dim, config.decoder_mlp_ratio)
        else:
            self.cross_attention = None
        self.layers = nn.ModuleList(
            [
                MultiMAEDecoderLayer(config, dim, config.decoder_num_attention_heads, config.decoder_mlp_ratio)
                for _ in range(config.decoder_num_hidden_layers)
            ]
        )
        self.out_proj = nn.Linear(dim, self.out_channels * self.patch_size**2)

    def forward(
        self,
        encoder_tokens: torch.Tensor,
        layout: list[tuple[str, int]],
        ids_keep: torch.Tensor,
        ids_restore: torch.Tensor,
        grid_size: tuple[int, int],
    ) -> torch.Tensor:
        """Encoder tokens (B, K + G, C) -> (B, C_task, h * p, w * p) prediction at the task's resolution."""
        context = self.proj_context(encoder_tokens)
        batch, num_visible, dim = context.shape[0], ids_keep.shape[1], context.shape[2]
        visible, global_tokens = context[:, :num_visible], context[:, num_visible:]

        # (N, dim) task + position embedding of every concatenated token. Only the visible tokens (the context) and
        # this task's own tokens (the queries) are ever read, so the full (B, N, dim) "filled" sequence of the
        # original is never built: same values, a fraction of the copies.
        positions = _resize_table(self.position_embeddings, grid_size, "bilinear").to(context.dtype)
        table = []
        for name, count in layout:
            task_embedding = (
                self.task_embeddings[name] if name in self.task_embeddings else context.new_zeros(1, 1, dim)
            )
            table.append((task_embedding + positions).expand(1, count, dim))
        table = torch.cat(table, dim=1)[0]

        names = [name for name, _ in layout]
        if self.use_task_queries and self.source.name in names:
            start = sum(count for _, count in layout[: names.index(self.source.name)])
            count = grid_size[0] * grid_size[1]
            # Where each of the task's tokens sits in [visible, masked] order: < K means visible.
            restore = ids_restore[:, start : start + count]
            if num_visible:
                own = gather_tokens(visible, restore.clamp(max=num_visible - 1))
                queries = torch.where((restore < num_visible).unsqueeze(-1), own, self.mask_token)
            else:
                queries = self.mask_token.expand(batch, count, dim)
            queries = queries + table[start : start + count]
        else:
            queries = self.mask_token + positions
            if self.source.name in self.task_embeddings:
                queries = queries + self.task_embeddings[self.source.name]
            queries = queries.expand(batch, -1, -1)

        context = torch.cat([visible + table[ids_keep], global_tokens], dim=1)
        if self.cross_attention is not None:
            hidden_states = self.cross_attention(self.query_norm(queries), self.context_norm(context))
            hidden_states = hidden_states + self.mlp(self.out_norm(hidden_states))
        else:
            hidden_states = queries
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        patches = self.out_proj(hidden_states)
        # Each token holds (channel, row, column) of its patch, channel-major as in the original.
        height, width, patch = grid_size[0], grid_size[1], self.patch_size
        patches = patches.reshape(batch, height, width, self.out_channels, patch, patch)
        return patches.permute(0, 3, 1, 4, 2, 5).reshape(batch, self.out_channels, height * patch, width * patch)


# ------------------------------------------------------------------------------------------------------------------
# Downstream heads
# ------------------------------------------------------------------------------------------------------------------


class MultiMAEConvNeXtBlock(nn.Module):
    """ConvNeXt block: depth-wise 7x7 conv, LayerNorm, pointwise MLP (x4), optional layer-scale, residual."""

    def __init__(self, dim: int, layer_scale_init_value: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim)) if layer_scale_init_value > 0 else None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = hidden_states
        hidden_states = self.dwconv(hidden_states).permute(0, 2, 3, 1)
        hidden_states = self.pwconv2(self.act(self.pwconv1(self.norm(hidden_states))))
        if self.gamma is not None:
            hidden_states = self.gamma * hidden_states
        return residual + hidden_states.permute(0, 3, 1, 2)


class MultiMAEConvNeXtHead(nn.Module):
    """The original's ConvNeXt segmentation adapter.

    Tokens of the head modalities (concatenated along channels) -> Linear to `embed_dim`; every patch token becomes
    sqrt(preds_per_patch)^2 positions of `embed_dim / preds_per_patch` channels (stride 4 for 16 px patches), then
    ConvNeXt blocks, a 1x1 classifier and upsampling to the image size.
    """

    def __init__(self, config: MultiMAEConfig) -> None:
        super().__init__()
        self.preds_per_patch = config.segmentation_head_preds_per_patch
        self.side = round(self.preds_per_patch**0.5)
        self.class_dim = config.segmentation_head_embed_dim // self.preds_per_patch
        self.interpolate_mode = config.segmentation_head_interpolate_mode
        self.proj_dec = nn.Linear(config.hidden_size * len(config.head_modalities), config.segmentation_head_embed_dim)
        self.blocks = nn.ModuleList(
            [
                MultiMAEConvNeXtBlock(self.class_dim, config.segmentation_head_layer_scale_init_value)
                for _ in range(config.segmentation_head_depth)
            ]
        )
        self.final_layer = nn.Conv2d(self.class_dim, config.num_labels, kernel_size=1)

    def forward(self, tokens: torch.Tensor, grid_size: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
        """(B, h*w, C') head-modality tokens -> (B, num_labels, H, W) logits."""
        batch = tokens.shape[0]
        height, width = grid_size
        hidden_states = self.proj_dec(tokens)
        hidden_states = hidden_states.reshape(batch, height, width, self.side, self.side, self.class_dim)
        hidden_states = hidden_states.permute(0, 5, 1, 3, 2, 4)
        hidden_states = hidden_states.reshape(batch, self.class_dim, height * self.side, width * self.side)
        for block in self.blocks:
            hidden_states = block(hidden_states)
        logits = self.final_layer(hidden_states)
        return F.interpolate(logits, size=image_size, mode=self.interpolate_mode)


def _torch_default_conv_init(conv: nn.Conv2d) -> None:
    """PyTorch's own Conv2d init (kaiming-uniform with a = sqrt(5), bias uniform in +-1/sqrt(fan_in)), through
    transformers' init functions so that loaded weights are left alone."""
    init.kaiming_uniform_(conv.weight, a=math.sqrt(5))
    if conv.bias is not None:
        fan_in = conv.weight[0].numel()
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(conv.bias, -bound, bound)


# ------------------------------------------------------------------------------------------------------------------
# Pre-trained model base
# ------------------------------------------------------------------------------------------------------------------


# The heads a pre-training or task checkpoint carries, dropped when only the encoder is loaded.
HEAD_KEYS = [r"^decoders\.", r"^classifier\.", r"^layernorm\.", r"^segmentation_head\."]


class MultiMAEPreTrainedModel(PreTrainedModel):
    config: MultiMAEConfig
    base_model_prefix = "multimae"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["MultiMAEPatchEmbeddings", "MultiMAESegmentationEmbeddings", "MultiMAELayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": MultiMAELayer, "attentions": MultiMAESelfAttention}
    _input_embed_layer = "input_adapters"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The initialisation the original's models end up with, parameter by parameter.

        The original builds every model (pre-training and fine-tuning) through `MultiMAE.__init__`, which first lets
        each adapter initialise itself and then re-initialises every Linear and LayerNorm of the whole model,
        adapters and heads included: so the truncated-normal (and `init_scale`) init written in its output adapters
        never survives, and every linear is xavier-uniform with zero bias (q, k, v parts of fused projections
        separately, `MultiMAEFusedLinear`). Patch projections are xavier-uniform as linears with PyTorch's default bias; the other
        convolutions (the ConvNeXt segmentation head) keep PyTorch's default init. Learned tokens, task and class
        embeddings are truncated normal, mask tokens zero, position tables fixed sin-cos.
        """
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            fan_out, fan_in = module.weight.shape
            bound = (6.0 / (fan_out // getattr(module, "num_parts", 1) + fan_in)) ** 0.5
            init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            _torch_default_conv_init(module)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.trunc_normal_(module.weight, std=std)
        if isinstance(module, (MultiMAEPatchEmbeddings, MultiMAESegmentationEmbeddings)):
            weight = module.projection.weight
            bound = (6.0 / (weight.shape[0] + weight[0].numel())) ** 0.5
            init.uniform_(weight, -bound, bound)
            init.copy_(
                module.position_embeddings, _sincos_table(module.position_embeddings.shape[1], self.config.grid_size)
            )
        elif isinstance(module, MultiMAESpatialDecoder):
            init.copy_(
                module.position_embeddings, _sincos_table(module.position_embeddings.shape[1], self.config.grid_size)
            )
            init.zeros_(module.mask_token)
            for embedding in module.task_embeddings.values():
                init.trunc_normal_(embedding, std=std)
        elif isinstance(module, MultiMAEConvNeXtBlock):
            if module.gamma is not None:
                init.constant_(module.gamma, self.config.segmentation_head_layer_scale_init_value)
        elif isinstance(module, MultiMAEModel) and module.global_tokens is not None:
            init.trunc_normal_(module.global_tokens, std=std)

    @property
    def num_lr_decay_layers(self) -> int:
        """Depth groups for layer-wise LR decay: input adapters + global tokens, one per block, everything after."""
        return self.config.num_hidden_layers + 2

    def get_layer_id_for_lr_decay(self, param_name: str) -> int:
        """Layer-wise LR decay group: input adapters and global tokens -> 0, block i -> i + 1, the rest last."""
        if re.search(r"(?:^|\.)(input_adapters\.|global_tokens)", param_name):
            return 0
        block = re.search(r"(?:^|\.)encoder\.layer\.(\d+)\.", param_name)
        if block is not None:
            return int(block.group(1)) + 1
        return self.num_lr_decay_layers - 1

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay: position tables, global/mask tokens, task and class embeddings."""
        keys = ("position_embeddings", "global_tokens", "mask_token", "task_embeddings", "class_embeddings")
        return {name for name, _ in self.named_parameters() if any(key in name for key in keys)}


# ------------------------------------------------------------------------------------------------------------------
# Encoder
# ------------------------------------------------------------------------------------------------------------------


class MultiMAEModel(MultiMAEPreTrainedModel):
    """The MultiMAE encoder (the original's MultiViT when unmasked) over any non-empty subset of the input modalities.

    Inputs are given as `pixel_values` (the first image modality, usually RGB) and/or `modalities={name: tensor}`:
    image modalities (B, C, H, W) floats, depth (B, 1, H, W) floats, segmentation maps (B, H/s, W/s) class indices at
    their stored resolution (s = stride_level, 4 for the original semseg). All must describe the same image size.
    """

    _keys_to_ignore_on_load_unexpected = HEAD_KEYS

    def __init__(self, config: MultiMAEConfig) -> None:
        super().__init__(config)
        adapters = {}
        for name in config.input_modalities:
            spec = config.modality(name)
            adapter_class = MultiMAESegmentationEmbeddings if spec.kind == "segmentation" else MultiMAEPatchEmbeddings
            adapters[name] = adapter_class(config, spec)
        self.input_adapters = nn.ModuleDict(adapters)
        self.global_tokens = (
            nn.Parameter(torch.zeros(1, config.num_global_tokens, config.hidden_size))
            if config.num_global_tokens > 0
            else None
        )
        self.encoder = MultiMAEEncoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        name = self.config.rgb_modality or self.config.input_modalities[0]
        return self.input_adapters[name]

    # ---- input handling -------------------------------------------------------------------------------------------

    def collect_inputs(
        self, pixel_values: torch.Tensor | None, modalities: dict[str, torch.Tensor] | None
    ) -> dict[str, torch.Tensor]:
        """Validated inputs in `config.input_modalities` order (clear errors for missing/unknown/invalid ones)."""
        given = dict(modalities or {})
        if not isinstance(given, dict):
            raise TypeError(f"modalities must be a dict {{name: tensor}}, got {type(modalities).__name__}.")
        if pixel_values is not None:
            rgb = self.config.rgb_modality
            if rgb is None:
                raise ValueError(
                    "pixel_values was given but the model has no image input modality; pass modalities={name: ...} "
                    f"with names from {self.config.input_modalities}."
                )
            if rgb in given:
                raise ValueError(f"{rgb!r} was given twice (as pixel_values and in modalities): pass it once.")
            given = {rgb: pixel_values, **given}
        if not given:
            raise ValueError(
                "No input: pass pixel_values and/or modalities={name: tensor} with at least one of "
                f"{self.config.input_modalities}."
            )
        known = [spec["name"] for spec in self.config.modalities]
        unknown = [name for name in given if name not in known]
        if unknown:
            raise ValueError(f"Unknown modalities {unknown}; this model knows {known}.")
        not_inputs = [name for name in given if name not in self.config.input_modalities]
        if not_inputs:
            raise ValueError(
                f"Modalities {not_inputs} are not encoder inputs of this model (input_modalities = "
                f"{self.config.input_modalities}); pass them as pre-training `targets` instead."
            )
        inputs = {name: given[name] for name in self.config.input_modalities if name in given}
        for name, values in inputs.items():
            inputs[name] = self._check_modality(self.config.modality(name), values)
        self.image_size_of(inputs)
        return inputs

    def _check_modality(self, spec: ModalitySpec, values: torch.Tensor) -> torch.Tensor:
        if not isinstance(values, torch.Tensor):
            raise TypeError(f"Modality {spec.name!r} must be a torch.Tensor, got {type(values).__name__}.")
        patch = max(1, self.config.patch_size // spec.stride_level)
        if spec.kind == "segmentation":
            if values.dim() == 4 and values.shape[1] == 1:
                values = values[:, 0]
            if values.dim() != 3 or values.dtype.is_floating_point:
                raise ValueError(
                    f"Segmentation modality {spec.name!r} must be class indices of shape (batch, height, width) with "
                    f"an integer dtype, got {tuple(values.shape)} {values.dtype}."
                )
            valid = values != spec.ignore_index
            if valid.any() and (values[valid].min() < 0 or values[valid].max() >= spec.num_classes):
                raise ValueError(
                    f"Segmentation modality {spec.name!r} holds class indices outside [0, {spec.num_classes}) "
                    f"(min {int(values[valid].min())}, max {int(values[valid].max())}); map unknown labels to the "
                    f"ignore index {spec.ignore_index} or build the model with more classes."
                )
            values = values.long()
        else:
            if values.dim() != 4 or values.shape[1] != spec.num_channels:
                raise ValueError(
                    f"Modality {spec.name!r} must have shape (batch, {spec.num_channels}, height, width), got "
                    f"{tuple(values.shape)}. Fix: batch the images (add a batch axis for one image) with "
                    f"{spec.num_channels} channel(s) each, e.g. through MultiMAEImageProcessor (it converts grayscale "
                    "or RGBA images to RGB)."
                )
            if not values.dtype.is_floating_point:
                raise TypeError(
                    f"Modality {spec.name!r} must be a floating-point tensor, got {values.dtype}: normalise the "
                    "images with MultiMAEImageProcessor (or convert and scale them yourself) first."
                )
            if spec.kind == "depth" and not torch.isfinite(values).all():
                raise ValueError(
                    f"Depth modality {spec.name!r} contains NaN or infinite values: mask them in the data path "
                    "(hf_unified_pretrain.data.multimodal sets invalid depth to 0 after standardisation and passes "
                    "`valid_masks` so that those pixels are never scored)."
                )
        height, width = values.shape[-2:]
        if height % patch or width % patch:
            raise ValueError(
                f"Modality {spec.name!r} of size {height}x{width} is not divisible by its patch size {patch} "
                f"(patch_size {self.config.patch_size} / stride_level {spec.stride_level}); resize or crop it."
            )
        return values

    def image_size_of(self, inputs: dict[str, torch.Tensor]) -> tuple[int, int]:
        """Full-resolution (H, W) described by the inputs; every modality must agree (after its stride level)."""
        sizes = {}
        for name, values in inputs.items():
            stride = self.config.modality(name).stride_level
            sizes[name] = (values.shape[-2] * stride, values.shape[-1] * stride)
        if len(set(sizes.values())) > 1:
            raise ValueError(
                f"Modalities describe different image sizes (after their stride levels): {sizes}. Resize or crop them "
                "together (hf_unified_pretrain.data.multimodal applies one crop box to all)."
            )
        batch_sizes = {name: values.shape[0] for name, values in inputs.items()}
        if len(set(batch_sizes.values())) > 1:
            raise ValueError(f"Modalities have different batch sizes: {batch_sizes}.")
        return next(iter(sizes.values()))

    def grid_size_of(self, inputs: dict[str, torch.Tensor]) -> tuple[int, int]:
        height, width = self.image_size_of(inputs)
        return height // self.config.patch_size, width // self.config.patch_size

    def concat_mask(
        self, bool_masked_pos: dict[str, torch.Tensor] | torch.Tensor, inputs: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """A per-modality mask dict (or an already concatenated (B, N) mask) -> (B, N) bool over the given inputs."""
        batch = next(iter(inputs.values())).shape[0]
        grid = self.grid_size_of(inputs)
        per_modality = grid[0] * grid[1]
        if isinstance(bool_masked_pos, dict):
            missing = [name for name in inputs if name not in bool_masked_pos]
            extra = [name for name in bool_masked_pos if name not in inputs]
            if missing or extra:
                raise ValueError(
                    f"bool_masked_pos must have one mask per given modality {list(inputs)}; missing {missing}, "
                    f"not given as input {extra}."
                )
            parts = [
                validate_bool_masked_pos(bool_masked_pos[name], batch, per_modality, f"bool_masked_pos[{name!r}]")
                for name in inputs
            ]
            return torch.cat(parts, dim=1)
        return validate_bool_masked_pos(bool_masked_pos, batch, per_modality * len(inputs))

    def embed_visible(self, inputs: dict[str, torch.Tensor], ids_keep: torch.Tensor) -> torch.Tensor:
        """(B, K) indices into the concatenated tokens of `inputs` -> (B, K, C) those tokens, equal to gathering them
        from the full embedding but projecting only the K kept patches per sample (the Dirichlet split makes the
        count per modality differ between samples, so each modality embeds its kept (sample, token) pairs as one
        flat batch and the rows are put back in `ids_keep` order)."""
        grid = self.grid_size_of(inputs)
        count = grid[0] * grid[1]
        batch, num_keep = ids_keep.shape
        modality = torch.div(ids_keep, count, rounding_mode="floor")
        rows, slots = [], []
        for index, (name, values) in enumerate(inputs.items()):
            sample, slot = (modality == index).nonzero(as_tuple=True)
            token = ids_keep[sample, slot] - index * count
            rows.append(self.input_adapters[name].embed_visible(values, sample, token))
            slots.append(sample * num_keep + slot)
        order = torch.argsort(torch.cat(slots))
        return torch.cat(rows)[order].reshape(batch, num_keep, self.config.hidden_size)

    # ---- forward --------------------------------------------------------------------------------------------------

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        modalities: dict[str, torch.Tensor] | None = None,
        bool_masked_pos: dict[str, torch.Tensor] | torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MultiMAEModelOutput:
        r"""Encodes the given modalities; drops the masked tokens when `bool_masked_pos` is given.

        Args:
            pixel_values: (B, C, H, W) the first image modality (RGB).
            modalities: Other (or all) inputs by name, see the class docstring.
            bool_masked_pos: Per-modality (B, N) bool masks (True = masked, every sample keeping the same number of
                tokens in total) or one (B, N_total) mask over the concatenated tokens.
            interpolate_pos_encoding: Accepted for API uniformity: the fixed position tables are always resized to
                the input's grid, as in the original.

        Returns:
            `MultiMAEModelOutput` (patch tokens in modality order, then the global tokens).
        """
        _check_kwargs(kwargs)
        inputs = self.collect_inputs(pixel_values, modalities)
        mask = ids_keep = ids_restore = None
        if bool_masked_pos is None:
            tokens = torch.cat([self.input_adapters[name](values) for name, values in inputs.items()], dim=1)
        else:
            mask = self.concat_mask(bool_masked_pos, inputs).to(next(iter(inputs.values())).device)
            ids_keep, _, ids_restore = mask_to_ids(mask)
            tokens = self.embed_visible(inputs, ids_keep)
        if self.global_tokens is not None:
            tokens = torch.cat([tokens, self.global_tokens.expand(tokens.shape[0], -1, -1).to(tokens.dtype)], dim=1)
        hidden_states = self.encoder(tokens, **kwargs)
        num_patch_tokens = hidden_states.shape[1] - self.config.num_global_tokens
        return MultiMAEModelOutput(
            last_hidden_state=hidden_states,
            pooler_output=hidden_states[:, :num_patch_tokens].mean(dim=1),
            bool_masked_pos=mask,
            ids_keep=ids_keep,
            ids_restore=ids_restore,
        )


def _head_tokens(config: MultiMAEConfig, inputs: dict[str, torch.Tensor], tokens: torch.Tensor, grid) -> torch.Tensor:
    """Tokens of `config.head_modalities`, concatenated along channels: (B, h*w, C * len(head_modalities))."""
    missing = [name for name in config.head_modalities if name not in inputs]
    if missing:
        raise ValueError(
            f"This head reads the tokens of {config.head_modalities}, but {missing} was not given as input."
        )
    count = grid[0] * grid[1]
    names = list(inputs)
    parts = [tokens[:, names.index(name) * count : (names.index(name) + 1) * count] for name in config.head_modalities]
    return torch.cat(parts, dim=-1)


class MultiMAEBackbone(BackboneMixin, MultiMAEPreTrainedModel):
    """MultiMAE encoder as a backbone (UperNet, Mask2Former, DETR, DPT, ...), from RGB only or several modalities.

    Stages: "stem" (input adapters' tokens) and one per block. A stage's map is the tokens of
    `config.head_modalities` (concatenated along channels) as (B, C, H/p, W/p), optionally resampled per stage by
    `config.backbone_feature_scales` (e.g. [4, 2, 1, 0.5] gives strides 4/8/16/32 for UperNet, parameter-free).

    DPT route: with `reshape_hidden_states=False` each stage is the raw token sequence with the global token moved
    FIRST, (B, 1 + N, C) — the [CLS]-first layout DPT's reassemble stage expects (needs `num_global_tokens=1` and
    one head modality); `DPTForDepthEstimation(DPTConfig(backbone_config=config, ...))` then works as with DINOv2.
    """

    _keys_to_ignore_on_load_unexpected = HEAD_KEYS

    def __init__(self, config: MultiMAEConfig) -> None:
        super().__init__(config)
        channels = config.hidden_size * len(config.head_modalities)
        self.num_features = [channels] * (config.num_hidden_layers + 1)
        self.multimae = MultiMAEModel(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.multimae.get_input_embeddings()

    @can_return_tuple
    @filter_output_hidden_states
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        modalities: dict[str, torch.Tensor] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BackboneOutput:
        """Inputs as `MultiMAEModel` -> `feature_maps` for `config.out_features`."""
        _check_kwargs(kwargs)
        inputs = self.multimae.collect_inputs(pixel_values, modalities)
        outputs = self.multimae(modalities=inputs, **kwargs)
        grid = self.multimae.grid_size_of(inputs)
        batch = outputs.last_hidden_state.shape[0]
        scales = self.config.backbone_feature_scales
        feature_maps = ()
        for stage, hidden_state in zip(self.stage_names, outputs.hidden_states):
            if stage not in self.out_features:
                continue
            patch_tokens = _head_tokens(self.config, inputs, hidden_state, grid)
            if not self.config.reshape_hidden_states:
                global_tokens = hidden_state[:, hidden_state.shape[1] - self.config.num_global_tokens :]
                feature_maps += (torch.cat([global_tokens, patch_tokens], dim=1),)
                continue
            feature_map = patch_tokens.transpose(1, 2).reshape(batch, -1, *grid)
            if scales is not None:
                feature_map = _rescale(feature_map, scales[self.out_features.index(stage)])
            feature_maps += (feature_map,)
        return BackboneOutput(
            feature_maps=feature_maps,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


def _rescale(feature_map: torch.Tensor, factor: float) -> torch.Tensor:
    if factor == 1:
        return feature_map
    if factor > 1:
        return F.interpolate(feature_map, scale_factor=factor, mode="bilinear", align_corners=False)
    return F.max_pool2d(feature_map, kernel_size=round(1 / factor))


# ------------------------------------------------------------------------------------------------------------------
# Pre-training
# ------------------------------------------------------------------------------------------------------------------


class MultiMAEForPreTraining(MultiMAEPreTrainedModel):
    """MultiMAE pre-training: Dirichlet multi-modal masking, visible-token encoder, one decoder + loss per task."""

    def __init__(self, config: MultiMAEConfig) -> None:
        super().__init__(config)
        self.multimae = MultiMAEModel(config)
        self.decoders = nn.ModuleDict(
            {
                task: MultiMAESpatialDecoder(config, task, config.modality(source))
                for task, source in config.decoder_tasks.items()
            }
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.multimae.get_input_embeddings()

    def mask_generator(self, num_tokens: dict[str, int]) -> Callable[..., dict[str, torch.Tensor]]:
        """The config's masking policy for inputs with `num_tokens` tokens per modality: a callable
        `(batch_size, generator=None, device=None) -> {modality: (B, N) bool}` (Dirichlet split of the visible
        budget, exact per sample)."""
        names = list(num_tokens)
        budget = self.config.visible_budget(sum(num_tokens.values()))
        alphas = self.config.alphas_for(names)

        def generate(batch_size: int, generator: torch.Generator | None = None, device=None):
            return dirichlet_multimodal_mask(
                num_tokens, budget, batch_size, alpha=alphas, generator=generator, device=device
            )

        return generate

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        modalities: dict[str, torch.Tensor] | None = None,
        bool_masked_pos: dict[str, torch.Tensor] | torch.Tensor | None = None,
        targets: dict[str, torch.Tensor] | None = None,
        valid_masks: dict[str, torch.Tensor] | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MultiMAEForPreTrainingOutput:
        r"""Masks across modalities, encodes the visible tokens, decodes every task and scores the masked patches.

        Args:
            pixel_values / modalities: Encoder inputs (see `MultiMAEModel`); depth already standardised when
                `config.standardize_depth` (the image processor and the multi-modal collator do it).
            bool_masked_pos: Per-modality (B, N) bool masks, True = masked (the same total per sample), or one
                concatenated (B, N_total) mask; None samples `mask_generator`'s Dirichlet masks.
            targets: Targets of output modalities that are not inputs (default: the inputs themselves).
            valid_masks: Per modality (B, H, W) bool at the modality's resolution, False where the target is invalid
                (e.g. missing depth); those pixels are never scored.
            interpolate_pos_encoding: Accepted for API uniformity (tables are always resized).

        Returns:
            `MultiMAEForPreTrainingOutput` with `loss`, `losses` per task, `logits` per task and the masks.
        """
        _check_kwargs(kwargs)
        inputs = self.multimae.collect_inputs(pixel_values, modalities)
        grid = self.multimae.grid_size_of(inputs)
        count = grid[0] * grid[1]
        batch = next(iter(inputs.values())).shape[0]
        device = next(iter(inputs.values())).device
        if bool_masked_pos is None:
            masks = self.mask_generator({name: count for name in inputs})(batch, device=device)
        elif isinstance(bool_masked_pos, dict):
            concatenated = self.multimae.concat_mask(bool_masked_pos, inputs)
            masks = dict(zip(inputs, torch.split(concatenated, count, dim=1)))
        else:
            concatenated = self.multimae.concat_mask(bool_masked_pos, inputs)
            masks = dict(zip(inputs, torch.split(concatenated, count, dim=1)))

        outputs = self.multimae(modalities=inputs, bool_masked_pos=masks, **kwargs)
        layout = [(name, count) for name in inputs]
        logits = {
            task: decoder(outputs.last_hidden_state, layout, outputs.ids_keep, outputs.ids_restore, grid)
            for task, decoder in self.decoders.items()
        }

        available = {**inputs, **(targets or {})}
        losses = {}
        for task, source in self.config.decoder_tasks.items():
            if source not in available:
                continue
            spec = self.config.modality(source)
            target = available[source]
            if spec.kind == "segmentation" and target.dim() == 4:
                target = target[:, 0]
            mask = None if self.config.loss_on_unmasked else masks.get(source)
            losses[task] = masked_dense_loss(
                logits[task].float(),
                target.float() if spec.kind != "segmentation" else target,
                mask,
                max(1, self.config.patch_size // spec.stride_level),
                loss_type=spec.loss,
                normalize_target=task == NORM_RGB,
                norm_eps=self.config.norm_pix_eps,
                valid_mask=(valid_masks or {}).get(source),
                ignore_index=spec.ignore_index,
            )
        loss = weighted_total(losses, self.config.loss_weights) if losses else None
        return MultiMAEForPreTrainingOutput(
            loss=loss,
            losses=losses,
            logits=logits,
            bool_masked_pos=masks,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


# ------------------------------------------------------------------------------------------------------------------
# Fine-tuning heads
# ------------------------------------------------------------------------------------------------------------------


class MultiMAEForImageClassification(MultiMAEPreTrainedModel):
    """MultiMAE encoder + the original's linear adapter: mean of all tokens (global included) or the last global
    token -> LayerNorm -> Linear."""

    _keys_to_ignore_on_load_unexpected = [r"^decoders\.", r"^segmentation_head\."]
    # the pooling norm is new at fine-tuning time (a pre-training checkpoint has none), as BEiT's
    _keys_to_ignore_on_load_missing = [r"^layernorm\."]

    def __init__(self, config: MultiMAEConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.multimae = MultiMAEModel(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.multimae.get_input_embeddings()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        modalities: dict[str, torch.Tensor] | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutput:
        """Inputs as `MultiMAEModel` (+ optional (B,) labels) -> (B, num_labels) logits and the loss."""
        _check_kwargs(kwargs)
        outputs = self.multimae(pixel_values, modalities, **kwargs)
        tokens = outputs.last_hidden_state
        pooled = tokens.mean(dim=1) if self.config.use_mean_pooling else tokens[:, -1]
        logits = self.classifier(self.layernorm(pooled))
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class MultiMAEForSemanticSegmentation(MultiMAEPreTrainedModel):
    """MultiMAE encoder + the original's ConvNeXt segmentation adapter (RGB or multi-modal input, e.g. RGB-D)."""

    _keys_to_ignore_on_load_unexpected = [r"^decoders\.", r"^classifier\.", r"^layernorm\."]

    def __init__(self, config: MultiMAEConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.multimae = MultiMAEModel(config)
        self.segmentation_head = MultiMAEConvNeXtHead(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.multimae.get_input_embeddings()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        modalities: dict[str, torch.Tensor] | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SemanticSegmenterOutput:
        """Inputs as `MultiMAEModel` (+ optional (B, H, W) labels) -> (B, num_labels, H, W) logits and the loss
        (cross-entropy ignoring `config.semantic_loss_ignore_index`)."""
        _check_kwargs(kwargs)
        inputs = self.multimae.collect_inputs(pixel_values, modalities)
        outputs = self.multimae(modalities=inputs, **kwargs)
        grid = self.multimae.grid_size_of(inputs)
        tokens = _head_tokens(self.config, inputs, outputs.last_hidden_state, grid)
        logits = self.segmentation_head(tokens, grid, self.multimae.image_size_of(inputs))
        loss = None
        if labels is not None:
            upsampled = logits
            if tuple(labels.shape[-2:]) != tuple(logits.shape[-2:]):
                upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(upsampled, labels.long(), ignore_index=self.config.semantic_loss_ignore_index)
        return SemanticSegmenterOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    "MultiMAEBackbone",
    "MultiMAEForImageClassification",
    "MultiMAEForPreTraining",
    "MultiMAEForPreTrainingOutput",
    "MultiMAEForSemanticSegmentation",
    "MultiMAEModel",
    "MultiMAEModelOutput",
    "MultiMAEPreTrainedModel",
]
