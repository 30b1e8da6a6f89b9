"""MVP: Multimodality-guided Visual Pre-training (Wei, Xie, Zhou, Li, Tian; ECCV 2022, arXiv 2203.05175).

MVP is BEiT with the dVAE tokenizer replaced by the vision tower of CLIP: a BEiT-style ViT student sees an image whose
block-wise masked patches are replaced by a learned [MASK] embedding, and at the masked positions it predicts the
features a frozen CLIP image encoder computes from the intact image.

No code was released with the paper, so the target and loss below are our choice, taken from MVP's closest
executable lineage (iTPN-CLIP, by overlapping authors) and documented here so that it can be changed in the config:

- teacher: `CLIPVisionModelWithProjection` (ViT-B/16 in the paper), patch tokens after `post_layernorm` and
  `visual_projection`, i.e. OpenAI CLIP's `ln_post(x) @ proj` applied to every patch token (CLS dropped), 512-d.
  It is attached with `set_teacher` (kept outside the module tree: never saved, trained or moved by hand) or its
  features are passed as `teacher_features`;
- student head: LayerNorm → Linear(hidden_size → teacher_dim) on every patch token;
- loss: 1 − cosine similarity between prediction and target, averaged over the masked patches only
  (`loss_type` = "cosine" | "smooth_l1" | "mse" | "l1", optional target LayerNorm with `normalize_target`);
- masking: BEiT block-wise, 75 of 196 patches at 224 px (`num_masking_patches`, or `mask_ratio` when it is None).

The student is architecturally a BEiT encoder (pre-norm blocks, [CLS] token, layer-scale, relative position bias
shared or per block, q/v biases without a k bias), so BEiT checkpoints convert losslessly
(`convert_mvp_original_to_hf.py`: `hf-unified-pretrain convert mvp`, `mvp_from_beit`).
"""

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.backbone_utils import BackboneMixin, filter_output_hidden_states
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BackboneOutput,
    BaseModelOutputWithPooling,
    ImageClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import capture_outputs

from ...layers import (
    DropPath,
    check_position_grid,
    eager_attention_forward,
    grid_of_size,
    interpolate_pos_embed,
    num_relative_distances,
    patch_grid_of,
    register_position_table_resizing,
    relative_position_index,
    resize_relative_position_bias_table,
    strict_forward_kwargs,
)
from ...masking import BlockMaskGenerator, validate_bool_masked_pos
from ...objectives import feature_regression_loss, weighted_total
from ...teachers import DEFAULT_TEACHER, TeacherHolderMixin
from .configuration_mvp import MVPConfig


@dataclass
class MVPForPreTrainingOutput(ModelOutput):
    """Output of `MVPForPreTraining`.

    Args:
        loss: Weighted total of `losses` (scalar).
        losses: Named loss parts, `{"feature": scalar}`.
        logits: (B, N, teacher_dim) predicted teacher features for every patch.
        bool_masked_pos: (B, N) bool, True where a patch was masked (the positions the loss counts).
        teacher_features: (B, N, teacher_dim) targets the predictions were compared with.
        hidden_states: Tuple of (B, 1 + N, C), the embeddings output and each block's output, when requested.
        attentions: Tuple of (B, heads, 1 + N, 1 + N) per block, when requested (eager attention).
    """

    loss: torch.FloatTensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    logits: torch.FloatTensor | None = None
    bool_masked_pos: torch.BoolTensor | None = None
    teacher_features: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class MVPPatchEmbeddings(nn.Module):
    """Cuts (B, C, H, W) pixels into non-overlapping patches and projects each to (B, N, hidden_size)."""

    def __init__(self, config: MVPConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.num_channels = config.num_channels
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )

    def grid_size(self, pixel_values: torch.Tensor) -> tuple[int, int]:
        """The (H/p, W/p) patch grid of an input, after checking its rank, channels and divisibility."""
        return patch_grid_of(pixel_values, self.num_channels, self.patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # With the weights' dtype, the shared check also rejects integer/raw 0..255/NaN pixels and dtype mismatches.
        patch_grid_of(
            pixel_values,
            self.num_channels,
            self.patch_size,
            dtype=self.projection.weight.dtype,
            training=self.training,
        )
        return self.projection(pixel_values.to(self.projection.weight.dtype)).flatten(2).transpose(1, 2)


class MVPEmbeddings(nn.Module):
    """Patch embeddings with masked patches swapped for [MASK], a prepended [CLS] token and optional absolute positions."""

    def __init__(self, config: MVPConfig, use_mask_token: bool = True) -> None:
        super().__init__()
        self.patch_embeddings = MVPPatchEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if use_mask_token else None
        self.grid_size = config.grid_size
        self.interpolate_on_load = config.interpolate_pos_encoding_on_load
        self.position_embeddings = (
            nn.Parameter(torch.zeros(1, 1 + self.grid_size[0] * self.grid_size[1], config.hidden_size))
            if config.use_absolute_position_embeddings
            else None
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def resize_checkpoint_position_table(self, name: str, table: torch.Tensor) -> torch.Tensor:
        """(1, 1 + n, C) position embeddings of a checkpoint of another image size → this model's grid (bicubic)."""
        if not self.interpolate_on_load or name != "position_embeddings":
            return table
        old_grid = grid_of_size(table.shape[1] - 1, like=self.grid_size)
        return interpolate_pos_embed(table, old_grid, self.grid_size, mode="bicubic", num_prefix_tokens=1)

    def forward(
        self, pixel_values: torch.Tensor, bool_masked_pos: torch.BoolTensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Returns the (B, 1 + N, C) token sequence and the (h, w) patch grid of the input.

        Position embeddings are interpolated (bicubic, as BEiT) when the input's grid is not the configured one; the
        model checks beforehand that this was asked for (`interpolate_pos_encoding`).
        """
        grid_size = self.patch_embeddings.grid_size(pixel_values)
        embeddings = self.patch_embeddings(pixel_values)
        batch_size, num_patches, _ = embeddings.shape
        if bool_masked_pos is not None:
            if self.mask_token is None:
                raise ValueError(
                    "bool_masked_pos was given but the model has no mask token: set config.use_mask_token=True (heads "
                    "that never mask, the classifier and the backbone, have none)."
                )
            bool_masked_pos = validate_bool_masked_pos(bool_masked_pos, batch_size, num_patches)
            embeddings = torch.where(bool_masked_pos.unsqueeze(-1), self.mask_token.to(embeddings.dtype), embeddings)
        embeddings = torch.cat([self.cls_token.expand(batch_size, -1, -1).to(embeddings.dtype), embeddings], dim=1)
        if self.position_embeddings is not None:
            embeddings = embeddings + interpolate_pos_embed(
                self.position_embeddings, self.grid_size, grid_size, mode="bicubic", num_prefix_tokens=1
            )
        return self.dropout(embeddings), grid_size


@functools.lru_cache(maxsize=16)
def _cached_relative_position_index(grid_size: tuple[int, int]) -> torch.Tensor:
    return relative_position_index(grid_size, with_cls_token=True)


class MVPRelativePositionBias(nn.Module):
    """BEiT relative position bias: one learned value per head for every 2-D offset and for the [CLS] pairs.

    The table is learned for the configured grid; for other grids (`interpolate_pos_encoding=True`) its offset part is
    resized bilinearly, as BEiT's transformers port does.
    """

    def __init__(self, config: MVPConfig) -> None:
        super().__init__()
        self.grid_size = config.grid_size
        self.interpolate_on_load = config.interpolate_pos_encoding_on_load
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros(num_relative_distances(self.grid_size, with_cls_token=True), config.num_attention_heads)
        )

    def resize_checkpoint_position_table(self, name: str, table: torch.Tensor) -> torch.Tensor:
        """A checkpoint's table of another image size → this model's grid (offsets bilinear, [CLS] rows kept)."""
        if not self.interpolate_on_load:
            return table
        target_offsets = (2 * self.grid_size[0] - 1, 2 * self.grid_size[1] - 1)
        offsets_h, offsets_w = grid_of_size(table.shape[0] - 3, like=target_offsets)
        old_grid = ((offsets_h + 1) // 2, (offsets_w + 1) // 2)
        return resize_relative_position_bias_table(table, old_grid, self.grid_size, num_extra_tokens=3)

    def forward(self, grid_size: tuple[int, int]) -> torch.Tensor:
        """Returns the additive attention bias (1, heads, 1 + h*w, 1 + h*w) for a (h, w) patch grid."""
        table = resize_relative_position_bias_table(
            self.relative_position_bias_table, self.grid_size, tuple(grid_size), num_extra_tokens=3
        )
        index = _cached_relative_position_index(tuple(grid_size)).to(table.device)
        num_tokens = index.shape[0]
        bias = table[index.reshape(-1)].reshape(num_tokens, num_tokens, -1)
        return bias.permute(2, 0, 1).unsqueeze(0).contiguous()


class MVPSelfAttention(nn.Module):
    """Multi-head self-attention with BEiT's biases: query and value have one, the key has none."""

    def __init__(self, config: MVPConfig) -> None:
        super().__init__()
        self.config = config
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_bias: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, C) tokens and an optional additive (1, heads, T, T) bias → (B, T, C) and the attention weights."""
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)

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
        attn_output = self.o_proj(attn_output.reshape(*input_shape, -1).contiguous())
        return attn_output, attn_weights


class MVPMLP(nn.Module):
    def __init__(self, config: MVPConfig) -> None:
        super().__init__()
        intermediate_size = round(config.hidden_size * config.mlp_ratio)
        self.fc1 = nn.Linear(config.hidden_size, intermediate_size)
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class MVPLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block: x + γ1·Attn(LN(x)), then x + γ2·MLP(LN(x)), with stochastic depth."""

    def __init__(self, config: MVPConfig, layer_index: int, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = MVPSelfAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MVPMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0.0 else nn.Identity()
        use_layer_scale = config.layer_scale_init_value > 0
        self.layer_scale_1 = nn.Parameter(torch.ones(config.hidden_size)) if use_layer_scale else None
        self.layer_scale_2 = nn.Parameter(torch.ones(config.hidden_size)) if use_layer_scale else None
        self.relative_position_bias = MVPRelativePositionBias(config) if config.use_relative_position_bias else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_bias: torch.Tensor | None = None,
        grid_size: tuple[int, int] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        if self.relative_position_bias is not None:
            own_bias = self.relative_position_bias(grid_size)
            attention_bias = own_bias if attention_bias is None else attention_bias + own_bias

        attention_output, _ = self.attention(self.layernorm_before(hidden_states), attention_bias, **kwargs)
        attention_output = self.dropout(attention_output)
        if self.layer_scale_1 is not None:
            attention_output = self.layer_scale_1 * attention_output
        hidden_states = hidden_states + self.drop_path(attention_output)

        mlp_output = self.dropout(self.mlp(self.layernorm_after(hidden_states)))
        if self.layer_scale_2 is not None:
            mlp_output = self.layer_scale_2 * mlp_output
        return hidden_states + self.drop_path(mlp_output)


class MVPPooler(nn.Module):
    """LayerNorm of the mean patch token (`use_mean_pooling`), else the [CLS] token."""

    def __init__(self, config: MVPConfig) -> None:
        super().__init__()
        self.layernorm = (
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.use_mean_pooling else None
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.layernorm is not None:
            return self.layernorm(hidden_states[:, 1:].mean(dim=1))
        return hidden_states[:, 0]


class MVPPredictionHead(nn.Module):
    """LayerNorm → Linear(hidden_size → teacher_dim): the student's guess of the teacher's token features."""

    def __init__(self, config: MVPConfig) -> None:
        super().__init__()
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.hidden_size, config.teacher_dim)

    def forward(self, patch_tokens: torch.Tensor) -> torch.Tensor:
        return self.projection(self.layernorm(patch_tokens))


class MVPPreTrainedModel(PreTrainedModel):
    config: MVPConfig
    base_model_prefix = "mvp"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["MVPEmbeddings", "MVPLayer"]
    _supports_sdpa = True
    # The relative position bias is an additive float mask, which flash attention cannot take.
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": MVPLayer, "attentions": MVPSelfAttention}
    _input_embed_layer = "patch_embeddings"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """BEiT's initialisation: truncated normal everywhere, block output projections scaled by depth."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, MVPEmbeddings):
            init.trunc_normal_(module.cls_token, std=std)
            if module.mask_token is not None:
                init.trunc_normal_(module.mask_token, std=std)
            if module.position_embeddings is not None:
                init.trunc_normal_(module.position_embeddings, std=std)
        elif isinstance(module, MVPRelativePositionBias):
            init.zeros_(module.relative_position_bias_table)
        elif isinstance(module, MVPLayer):
            # Children are initialised before their parent, so this overrides the generic Linear init: the
            # residual branches of deeper blocks start smaller (BEiT's `fix_init_weight`).
            depth_std = std / math.sqrt(2.0 * (module.layer_index + 1))
            init.trunc_normal_(module.attention.o_proj.weight, std=depth_std)
            init.trunc_normal_(module.mlp.fc2.weight, std=depth_std)
            if module.layer_scale_1 is not None:
                init.constant_(module.layer_scale_1, self.config.layer_scale_init_value)
                init.constant_(module.layer_scale_2, self.config.layer_scale_init_value)

    @property
    def num_lr_decay_layers(self) -> int:
        """Depth groups for layer-wise LR decay: embeddings, one per block, and everything after the blocks."""
        return self.config.num_hidden_layers + 2

    def get_layer_id_for_lr_decay(self, param_name: str) -> int:
        """Layer-wise LR decay group of a parameter (BEiT's rule).

        Embeddings ([CLS], [MASK], positions, patch projection) → 0, block i → i + 1, everything else (shared
        relative position bias, final norms, heads) → `num_lr_decay_layers - 1`.
        """
        if re.search(r"(?:^|\.)embeddings\.", param_name):
            return 0
        block = re.search(r"(?:^|\.)layers\.(\d+)\.", param_name)
        if block is not None:
            return int(block.group(1)) + 1
        return self.num_lr_decay_layers - 1

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay: tokens, position embeddings and relative bias tables."""
        return {
            name
            for name, _ in self.named_parameters()
            if name.endswith(("cls_token", "mask_token", "position_embeddings", "relative_position_bias_table"))
        }


class MVPModel(MVPPreTrainedModel):
    """The bare MVP (BEiT-style) encoder returning all tokens and a pooled representation.

    Args:
        config: The configuration.
        add_pooling_layer: Build the pooler (`pooler_output`).
        use_mask_token: Build the [MASK] embedding; None follows `config.use_mask_token`. Heads that never mask pass
            False, so that no parameter is left without gradient (DDP's unused-parameter check, the optimiser).
    """

    # A pre-training checkpoint's prediction head and a classification checkpoint's classifier are dropped quietly
    # when loading the bare encoder (transformers also applies these patterns to the classes containing it).
    _keys_to_ignore_on_load_unexpected = [r"^head\.", r"^classifier\."]
    # New at fine-tuning time, as in BEiT: the mean-pooling norm (pre-training never builds it) and the [MASK]
    # embedding (a classifier never trains one; it is used only when masking).
    _keys_to_ignore_on_load_missing = [r"(^|\.)pooler\.layernorm\.", r"embeddings\.mask_token"]

    def __init__(self, config: MVPConfig, add_pooling_layer: bool = True, use_mask_token: bool | None = None) -> None:
        super().__init__(config)
        self.embeddings = MVPEmbeddings(config, config.use_mask_token if use_mask_token is None else use_mask_token)
        self.shared_relative_position_bias = (
            MVPRelativePositionBias(config) if config.use_shared_relative_position_bias else None
        )
        depth = config.num_hidden_layers
        drop_path_rates = [config.drop_path_rate * index / max(depth - 1, 1) for index in range(depth)]
        self.layers = nn.ModuleList(
            [MVPLayer(config, layer_index=index, drop_path_rate=rate) for index, rate in enumerate(drop_path_rates)]
        )
        # With mean pooling the pooler normalises the pooled vector instead (BEiT's fc_norm).
        self.layernorm = (
            nn.Identity() if config.use_mean_pooling else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        )
        self.pooler = MVPPooler(config) if add_pooling_layer else None
        self.has_position_tables = (
            config.use_absolute_position_embeddings
            or config.use_relative_position_bias
            or config.use_shared_relative_position_bias
        )
        self.post_init()

    def get_input_embeddings(self) -> MVPPatchEmbeddings:
        return self.embeddings.patch_embeddings

    @strict_forward_kwargs
    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""Encodes images; masks patches only when `bool_masked_pos` is given.

        Args:
            pixel_values: (B, C, H, W) with H and W divisible by the patch size.
            bool_masked_pos: Optional (B, N) bool (or (B, h, w)), True = replace that patch by the [MASK] token.
            interpolate_pos_encoding: Interpolate the position tables (absolute embeddings bicubic, relative-position
                bias tables bilinear, as BEiT) to the input's grid when it is not the one of `config.image_size`;
                without it such inputs are an error.

        Returns:
            `last_hidden_state` (B, 1 + N, C) ([CLS] first), `pooler_output` (B, C) when the pooler exists,
            and `hidden_states` / `attentions` when requested.
        """
        if pixel_values is None:
            raise ValueError("MVPModel needs `pixel_values` of shape (batch, channels, height, width).")
        if self.has_position_tables:
            check_position_grid(
                self.embeddings.patch_embeddings.grid_size(pixel_values),
                self.config.grid_size,
                interpolate_pos_encoding=interpolate_pos_encoding or self.config.interpolate_pos_encoding,
                patch_size=self.config.patch_size,
            )
        hidden_states, grid_size = self.embeddings(pixel_values, bool_masked_pos=bool_masked_pos)
        attention_bias = None
        if self.shared_relative_position_bias is not None:
            attention_bias = self.shared_relative_position_bias(grid_size)
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_bias, grid_size, **kwargs)
        sequence_output = self.layernorm(hidden_states)
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled_output)


class MVPBackbone(BackboneMixin, MVPPreTrainedModel):
    """MVP encoder as a backbone for UperNet, DETR, Mask2Former, DPT, ... heads.

    Stages are "stem" (embeddings output) and one per block. Feature maps are (B, C, H/p, W/p) with
    `config.reshape_hidden_states=True`, else the raw (B, 1 + N, C) tokens that ViT necks such as DPT expect.
    """

    # Parts of other checkpoints a backbone never uses: the [MASK] token, the prediction head, the final norm.
    _keys_to_ignore_on_load_unexpected = [
        r"embeddings\.mask_token",
        r"^head\.",
        r"^(mvp\.)?layernorm\.",
        r"^classifier\.",
        r"^mvp\.pooler\.",
    ]

    def __init__(self, config: MVPConfig) -> None:
        super().__init__(config)
        self.num_features = [config.hidden_size] * (config.num_hidden_layers + 1)
        self.mvp = MVPModel(config, add_pooling_layer=False, use_mask_token=False)
        # Feature maps are the blocks' raw outputs (as BEiT's backbone); the final norm of the [CLS] path would be
        # a parameter without gradient.
        self.mvp.layernorm = nn.Identity()
        self.post_init()

    @strict_forward_kwargs
    @can_return_tuple
    @filter_output_hidden_states
    def forward(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BackboneOutput:
        """(B, C, H, W) pixels → `feature_maps` for `config.out_features` (+ hidden states / attentions if asked).

        `interpolate_pos_encoding` lets inputs of another size than `config.image_size` through (see `MVPModel`).
        """
        outputs = self.mvp(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        batch_size, _, height, width = pixel_values.shape
        patch_size = self.config.patch_size
        feature_maps = ()
        for stage, hidden_state in zip(self.stage_names, outputs.hidden_states):
            if stage not in self.out_features:
                continue
            if self.config.reshape_hidden_states:
                hidden_state = hidden_state[:, 1:].transpose(1, 2)
                hidden_state = hidden_state.reshape(batch_size, -1, height // patch_size, width // patch_size)
            feature_maps += (hidden_state,)
        return BackboneOutput(
            feature_maps=feature_maps, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class MVPForPreTraining(TeacherHolderMixin, MVPPreTrainedModel):
    """MVP pre-training: masked patches predict a frozen CLIP vision tower's projected patch tokens.

    Attach the teacher with `model.set_teacher(FrozenTeacher.from_pretrained(folder))` (or `load_teacher(folder)`),
    or pass precomputed `teacher_features`. The teacher is never part of `state_dict()` / `parameters()`.
    """

    def __init__(self, config: MVPConfig) -> None:
        super().__init__(config)
        if not config.use_mask_token:
            raise ValueError(
                "MVPForPreTraining replaces masked patches by a [MASK] token: set config.use_mask_token=True."
            )
        self.mvp = MVPModel(config, add_pooling_layer=False)
        self.head = MVPPredictionHead(config)
        self.post_init()

    def set_teacher(self, teacher: nn.Module | None, name: str = DEFAULT_TEACHER) -> None:
        """Attaches a frozen teacher to slot `name` (see `TeacherHolderMixin`); the default slot's teacher gives the
        targets, so its feature width is checked against `config.teacher_dim`."""
        feature_dim = getattr(teacher, "feature_dim", None)
        if name == DEFAULT_TEACHER and feature_dim is not None and feature_dim != self.config.teacher_dim:
            raise ValueError(
                f"The teacher returns {feature_dim}-d features but config.teacher_dim is {self.config.teacher_dim}: "
                f"build the model with teacher_dim={feature_dim} (run scripts: --config_overrides "
                f"teacher_dim={feature_dim})."
            )
        super().set_teacher(teacher, name=name)

    def load_teacher(self, path: str | PathLike | None = None, **teacher_kwargs) -> nn.Module:
        """Loads a `FrozenTeacher` from a local folder (default `config.teacher_name_or_path`), attaches it and
        records its path in the config. Extra arguments go to `FrozenTeacher.from_pretrained`."""
        from ...teachers import FrozenTeacher

        path = path if path is not None else self.config.teacher_name_or_path
        if path is None:
            raise ValueError("No teacher folder: pass `path` or set config.teacher_name_or_path.")
        teacher_kwargs.setdefault("target_grid", self.config.grid_size)
        teacher = FrozenTeacher.from_pretrained(path, **teacher_kwargs)
        self.set_teacher(teacher)
        self.config.teacher_name_or_path = str(path)
        return teacher

    def mask_generator(self, grid_size: tuple[int, int] | None = None) -> BlockMaskGenerator:
        """The masking policy of this config, for the model's own masks and for data collators alike.

        BEiT block masking of `config.num_masking_patches` patches when set, else of a `config.mask_ratio` fraction
        (`config.num_masked_for`), with blocks shaped by `config.mask_min_block_tokens` / `mask_min_aspect` /
        `mask_max_aspect`.

        Args:
            grid_size: (h, w) patch grid of the inputs; defaults to the grid at `config.image_size`.

        Returns:
            A callable `(batch_size, generator=None) -> (B, h*w) bool` mask generator (True = masked).
        """
        grid_size = self.config.mask_grid(grid_size)
        return BlockMaskGenerator(
            grid_size,
            self.config.num_masked_for(grid_size[0] * grid_size[1]),
            min_block_tokens=self.config.mask_min_block_tokens,
            min_aspect=self.config.mask_min_aspect,
            max_aspect=self.config.mask_max_aspect,
        )

    def sample_mask(self, pixel_values: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The (B, N) bool mask the model uses when given none (`mask_generator` for the input's grid)."""
        grid_size = self.mvp.embeddings.patch_embeddings.grid_size(pixel_values)
        return self.mask_generator(grid_size)(pixel_values.shape[0], generator=generator).to(pixel_values.device)

    @strict_forward_kwargs
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.BoolTensor | None = None,
        teacher_features: torch.Tensor | None = None,
        teacher_pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MVPForPreTrainingOutput:
        r"""Masks, encodes, predicts the teacher's features and scores the masked patches.

        Args:
            pixel_values: (B, C, H, W) student input.
            bool_masked_pos: (B, N) bool, True = masked. If None, one is sampled by `mask_generator` (BEiT block
                masking of `config.num_masking_patches`, or `mask_ratio`, patches).
            teacher_features: (B, N, teacher_dim) precomputed targets; if None the attached teacher computes them.
            teacher_pixel_values: Pixels prepared for the teacher (its own normalisation/size), passed to it.
            interpolate_pos_encoding: Accept inputs of another size than `config.image_size` (see `MVPModel`).

        Returns:
            `MVPForPreTrainingOutput` with `loss`, `losses={"feature": ...}`, `logits` (B, N, teacher_dim),
            `bool_masked_pos`, `teacher_features` and the encoder's hidden states / attentions when requested.
        """
        if pixel_values is None:
            raise ValueError("MVPForPreTraining needs `pixel_values` of shape (batch, channels, height, width).")
        grid_size = self.mvp.embeddings.patch_embeddings.grid_size(pixel_values)
        batch_size, num_patches = pixel_values.shape[0], grid_size[0] * grid_size[1]
        if bool_masked_pos is None:
            bool_masked_pos = self.mask_generator(grid_size)(batch_size).to(pixel_values.device)
        else:
            bool_masked_pos = validate_bool_masked_pos(bool_masked_pos, batch_size, num_patches)

        outputs = self.mvp(
            pixel_values,
            bool_masked_pos=bool_masked_pos,
            interpolate_pos_encoding=interpolate_pos_encoding,
            **kwargs,
        )
        predictions = self.head(outputs.last_hidden_state[:, 1:])

        if teacher_features is None:
            teacher_features = self._run_teacher(pixel_values, teacher_pixel_values)
        expected_shape = tuple(predictions.shape)
        if not isinstance(teacher_features, torch.Tensor) or tuple(teacher_features.shape) != expected_shape:
            got = (
                tuple(teacher_features.shape) if isinstance(teacher_features, torch.Tensor) else type(teacher_features)
            )
            raise ValueError(
                f"teacher_features must have shape (batch, num_patches, teacher_dim) = {expected_shape}, got {got}. "
                "The teacher's patch grid must equal the student's (FrozenTeacher(target_grid=...)) and its width "
                "config.teacher_dim."
            )

        losses = {
            "feature": feature_regression_loss(
                predictions,
                teacher_features,
                bool_masked_pos,
                loss_type=self.config.loss_type,
                normalize_target=self.config.normalize_target,
                target_norm_eps=self.config.layer_norm_eps,
                beta=self.config.smooth_l1_beta,
            )
        }
        loss = weighted_total(losses, {"feature": self.config.feature_loss_weight})
        return MVPForPreTrainingOutput(
            loss=loss,
            losses=losses,
            logits=predictions,
            bool_masked_pos=bool_masked_pos,
            teacher_features=teacher_features,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class MVPForImageClassification(MVPPreTrainedModel):
    """MVP encoder with a linear classifier on the pooled representation (mean patch token or [CLS])."""

    # Pre-training checkpoints carry a [MASK] token and the prediction head, which a classifier never uses.
    _keys_to_ignore_on_load_unexpected = [r"embeddings\.mask_token", r"^head\."]

    def __init__(self, config: MVPConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.mvp = MVPModel(config, add_pooling_layer=True, use_mask_token=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    @strict_forward_kwargs
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutput:
        """(B, C, H, W) pixels (+ optional (B,) labels) → (B, num_labels) logits and the loss.

        `interpolate_pos_encoding` lets inputs of another size than `config.image_size` through (see `MVPModel`).
        """
        outputs = self.mvp(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        logits = self.classifier(outputs.pooler_output)
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


# `from_pretrained` fits position tables saved at another image size to the configured grid (see
# `MVPConfig.interpolate_pos_encoding_on_load`).
register_position_table_resizing(MVPConfig.model_type)

__all__ = [
    "MVPBackbone",
    "MVPForImageClassification",
    "MVPForPreTraining",
    "MVPForPreTrainingOutput",
    "MVPModel",
    "MVPPreTrainedModel",
]
