# Copyright 2026 The hf_unified_pretrain Authors. Licensed under the Apache License, Version 2.0.
"""M3I: all-in-one pre-training by maximising the mutual information between an input and several targets.

One student forward (backbone → dense tokens) serves four terms, each optional by config:
  intra-view   predict the EMA encoder's dense features of the same, unmasked view at the masked cells;
  inter-view   predict the EMA encoder's dense features of the other view, the predictor's queries carrying that
               view's relative geometry (SiameseIM: offsets, log scales and flip as sin-cos features);
  category     cross-entropy of a linear head on the pooled features with (area-mixed) labels;
  image-text   CLIP-style contrast against a frozen text encoder (teacher slot "text"), negatives gathered.
Dense terms use the UniGrad loss (`objectives.unigrad_dense_loss`). The input may be a block-wise mix of two images
(`data.mixing`): `source_index` + `mix_partner` tell every target which image each cell came from.

M3I's own code was never released; the dense machinery follows SiameseIM (same authors), the rest the paper.
The EMA target encoder sits in teacher slot "ema" (`build_ema_teacher()`), so it is never saved with the student;
`save_backbone(folder)` writes the backbone alone, loadable with its own classes (e.g. `InternImageBackbone`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoBackbone, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ...layers import eager_attention_forward, strict_forward_kwargs
from ...masking import BlockMaskGenerator, gather_tokens, mask_to_ids, mix_soft_labels, source_fractions
from ...objectives import cross_entropy_loss, image_text_contrastive_loss, unigrad_dense_loss, weighted_total
from ...teachers import EMATeacher, TeacherHolderMixin
from ..registry import image_processor_for
from .configuration_m3i import M3IConfig

EMA_SLOT = "ema"
TEXT_SLOT = "text"
GEOMETRY_SIZE = 6  # (delta_i, delta_j, delta_h, delta_w, flip, flip_delta_j), SiameseIM's `rel_pos_21`


@dataclass
class M3IModelOutput(ModelOutput):
    """Dense tokens of the feature stage (B, N, C), their mean (B, C), their projection (B, N, D; None when the
    dense terms are off) and, on request, the backbone's stage maps."""

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    projected_features: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class M3IForPreTrainingOutput(ModelOutput):
    """`loss` (weighted sum), `losses` (named parts), classification `logits`, joint `image_embeds`/`text_embeds`."""

    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    logits: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


def identity_geometry(batch_size: int, device: torch.device | None = None) -> torch.Tensor:
    """Geometry of a view relative to itself: no offset, unit scales, no flip. (B, 6)."""
    geometry = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 0.0], device=device)
    return geometry.expand(batch_size, -1).clone()


def relative_position_embedding(geometry: torch.Tensor, grid_size: tuple[int, int], dim: int) -> torch.Tensor:
    """Sin-cos features of a view's cell centres expressed in another view's cell units (SiameseIM's formulation).

    Args:
        geometry: (B, 6) rows `(delta_i, delta_j, delta_h, delta_w, flip, flip_delta_j)`: the view's top-left offset
            (fractions of the reference view's height/width), its size relative to the reference, whether it is
            flipped relative to it, and the offset used when flipped.
        grid_size: (H, W) cells of the view.
        dim: The predictor width, a multiple of 4; the output has 2 * dim features (positions and log scales of
            rows and columns, sin and cos), which `M3IPredictor.position_mlp` maps back to dim.

    Returns:
        (B, H*W, 2 * dim), cells row-major.
    """
    if geometry.dim() != 2 or geometry.shape[1] != GEOMETRY_SIZE:
        raise ValueError(
            f"relative geometry must be (batch_size, 6) = (delta_i, delta_j, delta_h, delta_w, flip, flip_delta_j), "
            f"got {tuple(geometry.shape)}."
        )
    height, width = grid_size
    geometry = geometry.float()
    delta_i, delta_j, delta_h, delta_w, flip, flip_delta_j = geometry.unbind(-1)
    rows = torch.arange(height, dtype=torch.float32, device=geometry.device) + 0.5
    cols = torch.arange(width, dtype=torch.float32, device=geometry.device) + 0.5
    rows, cols = torch.meshgrid(rows, cols, indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    pos_h = delta_h[:, None] * rows + delta_i[:, None] * height - 0.5
    pos_w = delta_w[:, None] * cols + delta_j[:, None] * width
    flipped_w = -delta_w[:, None] * cols + flip_delta_j[:, None] * width
    pos_w = flip[:, None] * flipped_w + (1 - flip[:, None]) * pos_w - 0.5
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32, device=geometry.device) / quarter)
    out_h, out_w = pos_h[..., None] * omega, pos_w[..., None] * omega
    scale_h = ((10 * torch.log(delta_h))[:, None, None] * omega).expand_as(out_h)
    scale_w = ((10 * torch.log(delta_w))[:, None, None] * omega).expand_as(out_w)
    parts = (out_h, out_w, scale_h, scale_w)
    return torch.cat([f(part) for part in parts for f in (torch.sin, torch.cos)], dim=-1)


def mask_pixels(pixel_values: torch.Tensor, bool_masked_pos: torch.Tensor, stride: int) -> torch.Tensor:
    """Zeroes the pixels of masked feature cells (SimMIM-style input masking: works for any backbone, conv or ViT).

    Zero is the dataset mean after normalisation, so a masked cell carries no information about its content.
    """
    batch, _, height, width = pixel_values.shape
    cells = bool_masked_pos.view(batch, 1, height // stride, width // stride)
    keep = ~cells.repeat_interleave(stride, dim=2).repeat_interleave(stride, dim=3)
    return pixel_values * keep.to(pixel_values.dtype)


class M3IPredictorLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block of the predictor: self-attention over context tokens and queries, dispatched through
    transformers' attention interface (`config._attn_implementation`: "eager", "sdpa", ...), then an MLP."""

    def __init__(self, config: M3IConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.decoder_hidden_size
        self.num_heads = config.decoder_num_attention_heads
        self.head_dim = dim // self.num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        hidden = int(dim * config.decoder_mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        batch, length, dim = hidden.shape
        qkv = self.qkv(self.norm1(hidden)).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attended, _ = attention_interface(self, query, key, value, None, scaling=self.scaling)
        hidden = hidden + self.proj(attended.reshape(batch, length, dim))
        return hidden + self.mlp(self.norm2(hidden))


class M3IPredictor(nn.Module):
    """Predicts target tokens at query positions from the visible context tokens.

    Context tokens and queries (a learned mask token) both get the position embedding of their cell through one MLP
    (relative geometry → width), plus a learned source embedding saying which mixed image a token belongs to or a
    query asks about.
    """

    def __init__(self, config: M3IConfig) -> None:
        super().__init__()
        dim = config.decoder_hidden_size
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position_mlp = nn.Linear(2 * dim, dim)
        self.source_embeddings = nn.Embedding(2, dim)
        self.layers = nn.ModuleList(M3IPredictorLayer(config) for _ in range(config.decoder_num_layers))
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.head = nn.Linear(dim, dim)

    def forward(
        self,
        context: torch.Tensor,
        context_position: torch.Tensor,
        context_source: torch.Tensor,
        query_position: torch.Tensor,
        query_source: torch.Tensor,
    ) -> torch.Tensor:
        """context (B, Nc, D), positions (B, N*, 2D) raw sin-cos, sources (B, N*) long → predictions (B, Nq, D)."""
        context = context + self.position_mlp(context_position) + self.source_embeddings(context_source)
        queries = self.position_mlp(query_position) + self.source_embeddings(query_source)
        queries = queries + self.mask_token.to(queries.dtype)
        hidden = torch.cat([context, queries], dim=1)
        for layer in self.layers:
            hidden = layer(hidden)
        return self.head(self.norm(hidden[:, context.shape[1] :]))


class M3IClassificationHead(nn.Module):
    """Category head on the dense tokens: per token a linear expansion (no bias) + BatchNorm + GELU, the mean over
    tokens, then a linear classifier — InternImage's own classification head (1x1 conv, `cls_scale` 1.5), written on
    tokens so it fits any backbone. `classifier_hidden_ratio` 0: a linear layer on the mean of the tokens.

    The per-token layer matters at small scale: in a plain supervised loop on CIFAR-10 (tiny InternImage, 300 steps)
    a linear layer on the mean trained the backbone's pooled features to kNN 26.7 % (random init 30.1 %), this head
    to 37.4 %.
    """

    def __init__(self, config: M3IConfig, channels: int) -> None:
        super().__init__()
        hidden = round(channels * config.classifier_hidden_ratio)
        if hidden > 0:
            self.expand = nn.Linear(channels, hidden, bias=False)
            self.norm = nn.BatchNorm1d(hidden)
            self.act = nn.GELU()
        else:
            self.expand = self.norm = self.act = None
        self.dense = nn.Linear(hidden if hidden > 0 else channels, config.num_labels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, C) dense tokens → (B, num_labels) logits."""
        if self.expand is not None:
            batch, length, _ = tokens.shape
            hidden = self.expand(tokens).flatten(0, 1)
            tokens = self.act(self.norm(hidden)).view(batch, length, -1)
        return self.dense(tokens.mean(dim=1))


class M3IPreTrainedModel(PreTrainedModel):
    config_class = M3IConfig
    base_model_prefix = "m3i"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["M3IPredictorLayer"]
    # The predictor attends without mask or bias through the attention interface; the flags follow the backbones
    # M3I nests (MVP's ViT has an additive relative-position bias: no flash or flex attention there).
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Own modules only (the backbone is a PreTrainedModel and initialises itself): xavier linears, unit norms,
        small mask token, CLIP's logit scale."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm1d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm1d):
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=std)
        elif isinstance(module, M3IPredictor):
            init.normal_(module.mask_token, std=std)
        elif isinstance(module, M3IForPreTraining) and module.logit_scale is not None:
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)


class M3IModel(M3IPreTrainedModel):
    """The student encoder: backbone feature map → dense tokens, their mean, and their projection (predictor width)."""

    # The pre-training heads (predictor, category head, image-text projections), dropped when only the encoder loads.
    _keys_to_ignore_on_load_unexpected = [
        r"^(predictor|classifier|image_projection|text_projection)\.",
        r"^logit_scale$",
    ]

    def __init__(self, config: M3IConfig) -> None:
        super().__init__(config)
        self.backbone = AutoBackbone.from_config(config.backbone_config)
        # ViTs take `interpolate_pos_encoding`; a ConvNet (InternImage) has no position tables and rejects it
        self._backbone_interpolates = "interpolate_pos_encoding" in inspect.signature(self.backbone.forward).parameters
        channels = self.backbone.channels[0]
        # the projector only feeds the dense terms (predictor input and EMA targets)
        dense = config.intra_view_loss_weight > 0 or config.inter_view_loss_weight > 0
        self.projector = (
            nn.Sequential(
                nn.LayerNorm(channels, eps=config.layer_norm_eps), nn.Linear(channels, config.decoder_hidden_size)
            )
            if dense
            else None
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    @strict_forward_kwargs
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> M3IModelOutput:
        """(B, C, H, W) → tokens (B, N, C) with N = (H / stride) * (W / stride) row-major, pooled (B, C), projected;
        `hidden_states` = the backbone's stage maps. `interpolate_pos_encoding` goes to a backbone with position
        tables (a ViT) so other input sizes than its `image_size` pass; a ConvNet needs none."""
        if pixel_values is None:
            raise ValueError("M3IModel needs pixel_values (B, C, H, W).")
        stride = self.config.feature_stride
        if pixel_values.shape[-2] % stride or pixel_values.shape[-1] % stride:
            raise ValueError(
                f"pixel_values of size {tuple(pixel_values.shape[-2:])} must be multiples of the feature stride {stride}."
            )
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        extra = {"interpolate_pos_encoding": True} if interpolate_pos_encoding and self._backbone_interpolates else {}
        backbone_outputs = self.backbone(pixel_values, output_hidden_states=output_hidden_states, **extra)
        feature_map = backbone_outputs.feature_maps[0]
        tokens = feature_map.flatten(2).transpose(1, 2)
        return M3IModelOutput(
            last_hidden_state=tokens,
            pooler_output=tokens.mean(dim=1),
            projected_features=self.projector(tokens) if self.projector is not None else None,
            hidden_states=backbone_outputs.hidden_states if output_hidden_states else None,
        )


class M3IForPreTraining(TeacherHolderMixin, M3IPreTrainedModel):
    """M3I pre-training: the student `m3i` (backbone + projector), a predictor, a category head and image-text heads.

    Teachers (never saved with the model): slot "ema" = `EMATeacher` of `m3i` (`build_ema_teacher()`, updated by
    `teachers.EMACallback(ema, student="m3i")`), slot "text" = a `FrozenTextTeacher` (or pass `text_features`).
    """

    def __init__(self, config: M3IConfig) -> None:
        super().__init__(config)
        weights = config.loss_weights
        self.m3i = M3IModel(config)
        channels = self.m3i.backbone.channels[0]
        dense = weights["intra_view"] > 0 or weights["inter_view"] > 0
        self.predictor = M3IPredictor(config) if dense else None
        self.classifier = M3IClassificationHead(config, channels) if weights["classification"] > 0 else None
        if weights["image_text"] > 0:
            self.image_projection = nn.Linear(channels, config.projection_dim)
            self.text_projection = nn.Linear(config.text_hidden_size, config.projection_dim)
            self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        else:
            self.image_projection = self.text_projection = self.logit_scale = None
        self.post_init()

    # -- teachers and exports -----------------------------------------------------------------------------------
    def build_ema_teacher(self) -> EMATeacher:
        """Copies the student `m3i` into an `EMATeacher` (config's momentum schedule) in teacher slot "ema"."""
        ema = EMATeacher(
            self.m3i,
            base_momentum=self.config.ema_momentum,
            end_momentum=self.config.ema_end_momentum,
            schedule=self.config.ema_schedule,
        )
        self.set_teacher(ema, name=EMA_SLOT)
        return ema

    def save_backbone(self, save_directory: str, **kwargs) -> None:
        """Writes the pre-trained backbone alone: `<Backbone>.from_pretrained(save_directory)` (e.g.
        `InternImageBackbone`, `AutoBackbone`, or the backbone's bare model class) loads it directly, with the
        backbone's image processor at `config.image_size` (so `AutoImageProcessor` and pipelines work on it)."""
        self.m3i.backbone.save_pretrained(save_directory, **kwargs)
        image_processor_for(self.config).save_pretrained(save_directory)

    def mask_generator(self, grid_size: tuple[int, int] | None = None) -> BlockMaskGenerator:
        """Block-wise mask over the feature cells (`num_masking_patches` exact per sample)."""
        grid = grid_size or self.config.grid_size
        return BlockMaskGenerator(
            grid, num_masked=self.config.num_masking_patches, min_block_tokens=self.config.mask_min_block_tokens
        )

    def no_weight_decay(self) -> set[str]:
        return {"predictor.mask_token", "logit_scale"}

    # -- forward --------------------------------------------------------------------------------------------------
    @strict_forward_kwargs
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        bool_masked_pos: torch.Tensor | None = None,
        target_pixel_values: torch.Tensor | None = None,
        pixel_values_2: torch.Tensor | None = None,
        relative_geometry: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
        source_index: torch.Tensor | None = None,
        mix_partner: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        output_hidden_states: bool | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> M3IForPreTrainingOutput:
        r"""
        pixel_values: (B, C, H, W) the student's input: view 1, or a block-wise mix of view 1 of two images.
        bool_masked_pos: (B, N) True = masked feature cell (sampled with `mask_generator` when the dense terms are on
            and none is given; ignored otherwise).
        target_pixel_values: (B, C, H, W) clean (unmixed) view 1 of every image, for the intra-view targets
            (default: `pixel_values`, which must then be unmixed).
        pixel_values_2: (B, C, H, W) view 2 of every image, for the inter-view targets.
        relative_geometry: (B, 6) view 2 relative to view 1 of each image (SiameseIM's `rel_pos_21`).
        labels: (B,) class ids (mixed by area when the input is mixed) or (B, num_labels) soft labels (used as is).
        input_ids / attention_mask: captions for the text teacher (slot "text"); or `text_features` (B, D_text).
        source_index: (B, N) long, 0 where a cell comes from image b, 1 where it comes from image `mix_partner[b]`.
        mix_partner: (B,) long, the other image of each mixed input.
        generator: Random generator for the mask.
        output_hidden_states: Also return the backbone's stage maps.
        interpolate_pos_encoding: Let a ViT backbone (student and EMA target encoder) take other sizes than its
            `image_size`.
        """
        if pixel_values is None:
            raise ValueError("M3IForPreTraining needs pixel_values (B, C, H, W).")
        config, weights = self.config, self.config.loss_weights
        batch, _, height, width = pixel_values.shape
        grid = (height // config.feature_stride, width // config.feature_stride)
        mixed = source_index is not None
        if mixed != (mix_partner is not None):
            raise ValueError("A mixed input needs both source_index (B, N) and mix_partner (B,); got only one.")
        if mixed:
            if source_index.shape != (batch, grid[0] * grid[1]):
                raise ValueError(
                    f"source_index must be (B, N) = {(batch, grid[0] * grid[1])}, got {tuple(source_index.shape)}."
                )
            partner = mix_partner.to(pixel_values.device)
        else:
            source_index = torch.zeros(batch, grid[0] * grid[1], dtype=torch.long, device=pixel_values.device)
            partner = torch.arange(batch, device=pixel_values.device)
        # the image each cell shows: b (source 0) or its partner (source 1)
        cell_image = torch.where(
            source_index.bool(), partner[:, None], torch.arange(batch, device=partner.device)[:, None]
        )

        dense = weights["intra_view"] > 0 or weights["inter_view"] > 0
        student_input = pixel_values
        if dense:
            if bool_masked_pos is None:
                bool_masked_pos = self.mask_generator(grid)(batch, generator=generator).to(pixel_values.device)
            if bool_masked_pos.shape != (batch, grid[0] * grid[1]):
                raise ValueError(
                    f"bool_masked_pos must be (B, N) = {(batch, grid[0] * grid[1])} feature cells, got "
                    f"{tuple(bool_masked_pos.shape)}."
                )
            student_input = mask_pixels(pixel_values, bool_masked_pos.bool(), config.feature_stride)
        outputs = self.m3i(
            student_input, output_hidden_states=output_hidden_states, interpolate_pos_encoding=interpolate_pos_encoding
        )

        losses: dict[str, torch.Tensor] = {}
        if dense:
            losses.update(
                self._dense_losses(
                    outputs.projected_features,
                    bool_masked_pos.bool(),
                    grid,
                    source_index,
                    partner,
                    cell_image,
                    target_pixel_values if target_pixel_values is not None else (None if mixed else pixel_values),
                    pixel_values_2,
                    relative_geometry,
                    interpolate_pos_encoding,
                )
            )

        logits = None
        if self.classifier is not None:
            logits = self.classifier(outputs.last_hidden_state)
            if labels is not None:
                targets = labels
                if mixed and not labels.dtype.is_floating_point:
                    fractions = source_fractions(source_index, 2)
                    targets = mix_soft_labels(torch.stack([labels, labels[partner]], 1), fractions, config.num_labels)
                losses["classification"] = cross_entropy_loss(logits, targets)
            else:
                raise ValueError("classification_loss_weight > 0 needs `labels` (or set the weight to 0).")

        image_embeds = text_embeds = None
        if self.image_projection is not None:
            if text_features is None:
                if input_ids is None:
                    raise ValueError(
                        "image_text_loss_weight > 0 needs captions: pass input_ids (+ attention_mask) with a text "
                        "teacher in slot 'text', or text_features; or set the weight to 0."
                    )
                text_features = self.run_teacher(TEXT_SLOT, input_ids=input_ids, attention_mask=attention_mask)
            image_embeds = self.image_projection(outputs.pooler_output)
            text_embeds = self.text_projection(text_features.to(image_embeds.dtype))
            scale = self.logit_scale.exp()
            if mixed:
                losses["image_text"] = mixed_image_text_loss(
                    image_embeds, text_embeds, scale, source_index, partner, gather_distributed=True
                )
            else:
                losses["image_text"] = image_text_contrastive_loss(
                    image_embeds, text_embeds, scale, gather_distributed=True
                )

        active = {name: value for name, value in losses.items() if weights[name] > 0}
        return M3IForPreTrainingOutput(
            loss=weighted_total(active, {name: weights[name] for name in active}),
            losses=active,
            logits=logits,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
            hidden_states=outputs.hidden_states,
        )

    def _dense_losses(
        self,
        student_tokens: torch.Tensor,
        bool_masked_pos: torch.Tensor,
        grid: tuple[int, int],
        source_index: torch.Tensor,
        partner: torch.Tensor,
        cell_image: torch.Tensor,
        target_pixel_values: torch.Tensor | None,
        pixel_values_2: torch.Tensor | None,
        relative_geometry: torch.Tensor | None,
        interpolate_pos_encoding: bool = False,
    ) -> dict[str, torch.Tensor]:
        config, weights = self.config, self.config.loss_weights
        batch, _, dim = student_tokens.shape
        teacher_kwargs = {"interpolate_pos_encoding": True} if interpolate_pos_encoding else {}
        if self.get_teacher(EMA_SLOT) is None:
            raise ValueError(
                "The dense M3I terms need the EMA target encoder: call `model.build_ema_teacher()` once after "
                "building/loading the model (or set intra_view_loss_weight and inter_view_loss_weight to 0)."
            )
        ids = mask_to_ids(bool_masked_pos, require_visible=True)
        identity = identity_geometry(batch, student_tokens.device)
        own_positions = relative_position_embedding(identity, grid, dim)
        context = gather_tokens(student_tokens, ids.ids_keep)
        context_position = gather_tokens(own_positions, ids.ids_keep)
        context_source = torch.gather(source_index, 1, ids.ids_keep)
        predict = self.predictor
        losses = {}
        if weights["intra_view"] > 0:
            if target_pixel_values is None:
                raise ValueError("intra_view on a mixed input needs target_pixel_values (clean view 1 of each image).")
            targets = self.run_teacher(EMA_SLOT, target_pixel_values, **teacher_kwargs).projected_features
            masked = ids.ids_masked
            query_position = gather_tokens(own_positions, masked)
            query_source = torch.gather(source_index, 1, masked)
            predictions = predict(context, context_position, context_source, query_position, query_source)
            # the target of cell n is that cell of the clean view 1 of the image shown there
            image = torch.gather(cell_image, 1, masked)
            target = targets[image, masked]
            losses["intra_view"] = unigrad_dense_loss(
                predictions, target, neg_weight=config.neg_weight, normalize_predictions=config.normalize_predictions
            )
        if weights["inter_view"] > 0:
            if pixel_values_2 is None or relative_geometry is None:
                raise ValueError("inter_view needs pixel_values_2 (view 2) and relative_geometry (B, 6).")
            targets = self.run_teacher(EMA_SLOT, pixel_values_2, **teacher_kwargs).projected_features
            sources = [0, 1] if bool(source_index.any()) else [0]
            predictions, target = [], []
            for source in sources:
                image = torch.arange(batch, device=partner.device) if source == 0 else partner
                query_position = relative_position_embedding(relative_geometry[image], grid, dim)
                query_source = torch.full_like(source_index, source)
                predictions.append(predict(context, context_position, context_source, query_position, query_source))
                target.append(targets[image])
            losses["inter_view"] = unigrad_dense_loss(
                torch.cat(predictions, 1),
                torch.cat(target, 1),
                neg_weight=config.neg_weight,
                normalize_predictions=config.normalize_predictions,
            )
        return losses


def mixed_image_text_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    source_index: torch.Tensor,
    partner: torch.Tensor,
    *,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """CLIP loss with mixed positives: mixed image b matches caption b and caption `partner[b]` by area.

    Image → text targets are the rows of the mixing matrix M (B, B); text → image targets its columns, normalised.
    With no mixing M is the identity and this is the symmetric CLIP loss. `partner` indexes this process's batch;
    with `gather_distributed` the other processes' pairs are extra negatives (as the unmixed CLIP loss).
    """
    batch = image_embeds.shape[0]
    fractions = source_fractions(source_index, 2)
    mixing = torch.zeros(batch, batch, device=image_embeds.device, dtype=image_embeds.dtype)
    rows = torch.arange(batch, device=image_embeds.device)
    mixing.index_put_((rows, rows), fractions[:, 0].to(mixing.dtype), accumulate=True)
    mixing.index_put_((rows, partner.to(rows.device)), fractions[:, 1].to(mixing.dtype), accumulate=True)
    return image_text_contrastive_loss(
        image_embeds, text_embeds, logit_scale, match=mixing, gather_distributed=gather_distributed
    )


__all__ = [
    "M3IClassificationHead",
    "M3IForPreTraining",
    "M3IForPreTrainingOutput",
    "M3IModel",
    "M3IModelOutput",
    "M3IPreTrainedModel",
    "identity_geometry",
    "mixed_image_text_loss",
    "relative_position_embedding",
]
