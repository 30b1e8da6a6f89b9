"""InternImage (Wang et al., "InternImage: Exploring Large-Scale Vision Foundation Models with Deformable
Convolutions", CVPR 2023): a hierarchical conv backbone whose token mixer is DCNv3.

Layout follows the original `classification/models/intern_image.py` (OpenGVLab/InternImage): stem → stages of
DCNv3 blocks, each stage ending with an optional LayerNorm and a stride-2 downsampling conv → head. Feature maps stay
channels-last (N, H, W, C) inside the stages, as in the original; every output of this module is channels-first
(N, C, H, W), as transformers' backbones return them.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.backbone_utils import BackboneMixin, filter_output_hidden_states
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BackboneOutput,
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils.generic import can_return_tuple

from ...layers import DropPath, check_conv_pixels, eager_attention_forward, strict_forward_kwargs
from ...layers.dcnv3 import dcnv3_core
from .configuration_internimage import InternImageConfig

# Smallest input side: the four stages run at strides 4, 8, 16 and 32.
MIN_IMAGE_SIZE = 32

# Classification heads of every InternImage size (T-XL conv head, H/G attention-pooling head): never part of the
# bare model or a backbone.
CLASSIFICATION_HEAD_KEYS = r"^(conv_head|head|classifier|dcnv3_head_x[34]|clip_projector|fc_norm)\."


def check_internimage_pixels(
    pixel_values: torch.Tensor, config: InternImageConfig, dtype: torch.dtype, *, training: bool = False
) -> None:
    """Raises a clear error for pixel batches InternImage cannot use (rank, channels, size, dtype, raw values)."""
    minimum = MIN_IMAGE_SIZE * 2 ** max(len(config.depths) - 4, 0)
    check_conv_pixels(
        pixel_values,
        num_channels=config.num_channels,
        min_size=minimum,
        model_name="InternImage",
        why_min_size=f"runs its last stage at stride {minimum}",
        image_size=config.image_size,
        dtype=dtype,
        training=training,
    )


class InternImageStem(nn.Module):
    """Two stride-2 3x3 convs with LayerNorms: (N, C_in, H, W) → (N, H/4, W/4, C) channels-last."""

    def __init__(self, config: InternImageConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(config.num_channels, config.channels // 2, kernel_size=3, stride=2, padding=1)
        self.norm1 = nn.LayerNorm(config.channels // 2, eps=config.layer_norm_eps)
        self.act = ACT2FN[config.hidden_act]
        self.conv2 = nn.Conv2d(config.channels // 2, config.channels, kernel_size=3, stride=2, padding=1)
        self.norm2 = nn.LayerNorm(config.channels, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.norm1(self.conv1(pixel_values).permute(0, 2, 3, 1))
        hidden = self.act(hidden).permute(0, 3, 1, 2)
        hidden = self.norm2(self.conv2(hidden).permute(0, 2, 3, 1))
        return self.dropout(hidden)


class InternImageDownsample(nn.Module):
    """Stride-2 3x3 conv (no bias) doubling the width, then LayerNorm; channels-last in and out."""

    def __init__(self, config: InternImageConfig, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm = nn.LayerNorm(2 * channels, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) → (N, H/2, W/2, 2C) channels-last."""
        return self.norm(self.conv(hidden).permute(0, 2, 3, 1))


class InternImageZeroInitLinear(nn.Linear):
    """A linear head that starts at zero (DCNv3 offsets, mask logits, centre gate): sampling starts on the regular
    grid with uniform point weights. A class of its own because transformers skips `_init_weights` for modules that
    own no parameters directly, such as `InternImageDCNv3`."""


class InternImageXavierLinear(nn.Linear):
    """A DCNv3 input/output projection, xavier-uniform initialised like the original's."""


class InternImageDCNv3(nn.Module):
    """DCNv3 token mixer: a depth-wise conv branch predicts per-group offsets and a softmax mask over the kernel points;
    the projected input is sampled at the moved points (`dcnv3_core`), optionally gated with the projected input
    itself (center feature scale), and projected out. Channels-last (N, H, W, C) in and out."""

    def __init__(self, config: InternImageConfig, channels: int, group: int) -> None:
        super().__init__()
        self.channels = channels
        self.group = group
        self.kernel_size = config.kernel_size
        self.offset_scale = float(config.offset_scale)
        self.remove_center = config.remove_center
        points = config.kernel_size**2 - int(config.remove_center)
        dw_kernel_size = config.dw_kernel_size or config.kernel_size
        self.dw_conv = nn.Conv2d(
            channels, channels, kernel_size=dw_kernel_size, padding=(dw_kernel_size - 1) // 2, groups=channels
        )
        self.dw_norm = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.dw_act = ACT2FN[config.hidden_act]
        self.offset = InternImageZeroInitLinear(channels, group * points * 2)
        self.mask = InternImageZeroInitLinear(channels, group * points)
        self.input_proj = InternImageXavierLinear(channels, channels)
        self.output_proj = InternImageXavierLinear(channels, channels)
        self.center_feature_scale_proj = (
            InternImageZeroInitLinear(channels, group) if config.center_feature_scale else None
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        projected = self.input_proj(hidden)
        context = self.dw_conv(hidden.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        context = self.dw_act(self.dw_norm(context))
        # One GEMM for every head that reads `context` (offsets, mask logits, centre gate), split by views.
        heads = [self.offset, self.mask]
        if self.center_feature_scale_proj is not None:
            heads.append(self.center_feature_scale_proj)
        fused = F.linear(context, torch.cat([head.weight for head in heads]), torch.cat([head.bias for head in heads]))
        offset, mask_logits, gate_logits = fused.split(
            [
                self.offset.out_features,
                self.mask.out_features,
                fused.shape[-1] - self.offset.out_features - self.mask.out_features,
            ],
            dim=-1,
        )
        mask = mask_logits.unflatten(-1, (self.group, -1)).softmax(-1).flatten(3)
        sampled = dcnv3_core(
            projected,
            offset,
            mask,
            group=self.group,
            kernel_size=self.kernel_size,
            padding=(self.kernel_size - 1) // 2,
            offset_scale=self.offset_scale,
            remove_center=self.remove_center,
        )
        if self.center_feature_scale_proj is not None:
            gate = gate_logits.sigmoid()
            gate = gate.repeat_interleave(self.channels // self.group, dim=-1)
            sampled = sampled * (1 - gate) + projected * gate
        return self.output_proj(sampled)


class InternImageMLP(nn.Module):
    def __init__(self, config: InternImageConfig, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, int(channels * config.mlp_ratio))
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(int(channels * config.mlp_ratio), channels)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(self.act(self.fc1(hidden)))))


class InternImageLayer(GradientCheckpointingLayer):
    """One DCNv3 block: DCNv3 then MLP residual branches in one of the original's three orders.

    pre-norm (T):          x + dp(ls1 * dcn(norm1(x)));  x + dp(ls2 * mlp(norm2(x)))
    post-norm (S-XL, G):   x + dp(ls1 * norm1(dcn(x)));  x + dp(ls2 * norm2(mlp(x)))
    res-post-norm (H):     x + dp(rpn1(dcn(norm1(x))));  x + dp(rpn2(mlp(norm2(x))))
    (ls = layer-scale, identity when `layer_scale` is None; dp = stochastic depth)
    """

    def __init__(self, config: InternImageConfig, channels: int, group: int, drop_path_rate: float) -> None:
        super().__init__()
        self.post_norm = config.post_norm
        self.norm1 = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.dcn = InternImageDCNv3(config, channels, group)
        self.norm2 = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.mlp = InternImageMLP(config, channels)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0.0 else nn.Identity()
        if config.layer_scale is not None:
            self.layer_scale1 = nn.Parameter(torch.full((channels,), float(config.layer_scale)))
            self.layer_scale2 = nn.Parameter(torch.full((channels,), float(config.layer_scale)))
        else:
            self.layer_scale1 = self.layer_scale2 = None
        if config.uses_res_post_norm:
            self.res_post_norm1 = nn.LayerNorm(channels, eps=config.layer_norm_eps)
            self.res_post_norm2 = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        else:
            self.res_post_norm1 = self.res_post_norm2 = None

    def _branch(self, hidden, norm, mixer, res_post_norm, layer_scale):
        if self.post_norm:
            out = norm(mixer(hidden))
        else:
            out = mixer(norm(hidden))
            if res_post_norm is not None:
                out = res_post_norm(out)
        if layer_scale is not None:
            out = layer_scale * out
        return hidden + self.drop_path(out)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = self._branch(hidden, self.norm1, self.dcn, self.res_post_norm1, self.layer_scale1)
        return self._branch(hidden, self.norm2, self.mlp, self.res_post_norm2, self.layer_scale2)


class InternImageStage(nn.Module):
    """Blocks of one stage, the optional level-2 post norms and stage norm; the downsampling to the next stage is
    applied by the encoder to the stage output."""

    def __init__(
        self,
        config: InternImageConfig,
        index: int,
        drop_path_rates: list[float],
    ) -> None:
        super().__init__()
        channels = config.hidden_sizes[index]
        group = config.groups[index]
        self.layers = nn.ModuleList(
            [InternImageLayer(config, channels, group, rate) for rate in drop_path_rates[: config.depths[index]]]
        )
        post_norm_ids = config.level2_post_norm_block_ids if config.level2_post_norm and index == 2 else None
        self.post_norm_ids = list(post_norm_ids or [])
        self.post_norms = (
            nn.ModuleList([nn.LayerNorm(channels, eps=config.layer_norm_eps) for _ in self.post_norm_ids])
            if self.post_norm_ids
            else None
        )
        self.norm = nn.LayerNorm(channels, eps=config.layer_norm_eps) if config.has_stage_norm else None
        self.downsample = InternImageDownsample(config, channels) if index < len(config.depths) - 1 else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, H, W, C) → (N, H, W, C), before downsampling."""
        for block_index, layer in enumerate(self.layers):
            hidden = layer(hidden)
            if block_index in self.post_norm_ids:
                hidden = self.post_norms[self.post_norm_ids.index(block_index)](hidden)
        if self.norm is not None:
            hidden = self.norm(hidden)
        return hidden


class InternImageEncoder(nn.Module):
    def __init__(self, config: InternImageConfig) -> None:
        super().__init__()
        total = sum(config.depths)
        if config.drop_path_type == "uniform":
            rates = [float(config.drop_path_rate)] * total
        else:
            # torch.linspace's float32 values, as the original (also on the meta device)
            rates = torch.linspace(0, config.drop_path_rate, total, device="cpu").tolist()
        starts = [sum(config.depths[:index]) for index in range(len(config.depths))]
        self.stages = nn.ModuleList(
            [InternImageStage(config, index, rates[start:]) for index, start in enumerate(starts)]
        )

    def forward(self, stem: torch.Tensor) -> list[torch.Tensor]:
        """(N, C, H/4, W/4) stem map → every stage's output before its downsampling, (N, C_i, H_i, W_i).

        The returned channels-first views are what the next stage consumes, so gradients reach them (hidden states
        kept with `retain_grad` see the gradient of everything downstream).
        """
        stage_outputs = []
        hidden = stem.permute(0, 2, 3, 1)
        for stage in self.stages:
            stage_output = stage(hidden).permute(0, 3, 1, 2)
            stage_outputs.append(stage_output)
            if stage.downsample is not None:
                hidden = stage.downsample(stage_output)
        return stage_outputs


class InternImageAttentionPooling(nn.Module):
    """The H/G "clip projector": one query (the token mean) cross-attends to all tokens.

    LayerNorms on query, key and value inputs; q/k/v projections with separate biases; heads of
    `clip_pretrain_embed_dim / clip_num_heads`; output projection to `clip_embed_dim`.
    """

    def __init__(self, config: InternImageConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.clip_pretrain_embed_dim
        self.num_heads = config.clip_num_heads
        self.head_dim = dim // config.clip_num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.norm_q = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.norm_k = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.norm_v = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.o_proj = nn.Linear(dim, config.clip_embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(N, T, D) tokens → (N, clip_embed_dim)."""
        batch, length, _ = tokens.shape
        query = self.q_proj(self.norm_q(tokens.mean(1, keepdim=True)))
        key = self.k_proj(self.norm_k(tokens))
        value = self.v_proj(self.norm_v(tokens))
        query = query.view(batch, 1, self.num_heads, self.head_dim).transpose(1, 2)
        key = key.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        value = value.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        pooled, _ = attention(self, query, key, value, None, scaling=self.scaling, dropout=0.0)
        return self.o_proj(pooled.reshape(batch, -1))


class InternImagePreTrainedModel(PreTrainedModel):
    config: InternImageConfig
    base_model_prefix = "internimage"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["InternImageStem", "InternImageLayer", "InternImageDownsample"]
    # Only the H/G classification head attends (a single pooling query); it dispatches through the attention
    # interface, so eager and SDPA both apply there.
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """The original's initialisation: truncated normal linear layers, PyTorch's default convs, zero DCNv3
        offset/mask/gate heads, xavier-uniform DCNv3 projections, layer-scale at its configured value."""
        std = self.config.initializer_range
        if isinstance(module, InternImageZeroInitLinear):
            init.zeros_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, InternImageXavierLinear):
            init.xavier_uniform_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if getattr(module, "running_mean", None) is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        if isinstance(module, InternImageLayer) and module.layer_scale1 is not None:
            init.constant_(module.layer_scale1, self.config.layer_scale)
            init.constant_(module.layer_scale2, self.config.layer_scale)

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay: the layer-scale vectors (norms and biases: the trainer)."""
        return {name for name, _ in self.named_parameters() if "layer_scale" in name}


class InternImageModel(InternImagePreTrainedModel):
    """The InternImage stem and stages. Returns the last stage's map, its average, and (on request) every stage.

    Stage outputs are taken before downsampling and after the stage norm, as the original's detection/segmentation
    backbones return them: dense (N, C_i, H / 2**(i+2), W / 2**(i+2)) maps that a dense predictor can consume.
    """

    # A classification checkpoint's head (any size) is dropped quietly when loading the bare model.
    _keys_to_ignore_on_load_unexpected = [CLASSIFICATION_HEAD_KEYS]

    def __init__(self, config: InternImageConfig) -> None:
        super().__init__(config)
        self.embeddings = InternImageStem(config)
        self.encoder = InternImageEncoder(config)
        self.pooler = nn.AdaptiveAvgPool2d((1, 1))
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.conv1

    @strict_forward_kwargs
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPoolingAndNoAttention:
        r"""(N, C, H, W) pixels (H, W >= 32) → `last_hidden_state` (N, 8C, H/32, W/32), `pooler_output` (N, 8C),
        and with `output_hidden_states` the stem map and every stage's map (N, C_i, H_i, W_i)."""
        check_internimage_pixels(pixel_values, self.config, self.embeddings.conv1.weight.dtype, training=self.training)
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        stem = self.embeddings(pixel_values.to(self.embeddings.conv1.weight.dtype)).permute(0, 3, 1, 2)
        stage_outputs = self.encoder(stem)
        last_hidden_state = stage_outputs[-1]
        hidden_states = (stem, *stage_outputs) if output_hidden_states else None
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=last_hidden_state,
            pooler_output=self.pooler(last_hidden_state).flatten(1),
            hidden_states=hidden_states,
        )


class InternImageBackbone(BackboneMixin, InternImagePreTrainedModel):
    """InternImage as a backbone for UperNet, Mask2Former, DETR-family, ... heads.

    Stages "stem" (stride 4, C channels) and "stage1".."stage4" (strides 4/8/16/32, C..8C channels): the stage outputs
    before downsampling, NCHW, as the original det/seg backbones (`out_indices=(0, 1, 2, 3)` there =
    `out_features=["stage1", "stage2", "stage3", "stage4"]` here).
    """

    has_attentions = False
    # Classification heads of any size are never part of a backbone.
    _keys_to_ignore_on_load_unexpected = [CLASSIFICATION_HEAD_KEYS]

    def __init__(self, config: InternImageConfig) -> None:
        super().__init__(config)
        self.num_features = [config.channels, *config.hidden_sizes]
        self.internimage = InternImageModel(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.internimage.get_input_embeddings()

    @strict_forward_kwargs
    @can_return_tuple
    @filter_output_hidden_states
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> BackboneOutput:
        """(N, C, H, W) pixels → `feature_maps` for `config.out_features` (NCHW), + all stages if requested."""
        outputs = self.internimage(pixel_values, output_hidden_states=True)
        feature_maps = tuple(
            hidden for stage, hidden in zip(self.stage_names, outputs.hidden_states) if stage in self.out_features
        )
        return BackboneOutput(feature_maps=feature_maps, hidden_states=outputs.hidden_states, attentions=None)


class InternImageForImageClassification(InternImagePreTrainedModel):
    """InternImage with the original's classification head.

    T-XL: 1x1 conv to `cls_scale * 8C` (no bias) + BatchNorm + GELU, average pooling, linear classifier.
    H/G (`use_clip_projector`): stage 4 → 1x1 conv to 4 * 1024 + pixel shuffle (stride 16), plus stage 3 → 1x1 conv to
    1024, summed; attention pooling (one mean query, 16 heads) → 768, LayerNorm, linear classifier.
    """

    def __init__(self, config: InternImageConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.internimage = InternImageModel(config)
        last = config.hidden_sizes[-1]
        if config.use_clip_projector:
            dim = config.clip_pretrain_embed_dim
            self.dcnv3_head_x4 = nn.Conv2d(last, dim * 4, kernel_size=1)
            self.dcnv3_head_x3 = nn.Conv2d(config.hidden_sizes[-2], dim, kernel_size=1)
            self.clip_projector = InternImageAttentionPooling(config)
            self.fc_norm = nn.LayerNorm(config.clip_embed_dim, eps=config.layer_norm_eps)
            head_width = config.clip_embed_dim
        else:
            head_width = int(last * config.cls_scale)
            self.conv_head = nn.Sequential(
                nn.Conv2d(last, head_width, kernel_size=1, bias=False),
                nn.BatchNorm2d(head_width),
                ACT2FN[config.hidden_act],
            )
        self.classifier = nn.Linear(head_width, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.internimage.get_input_embeddings()

    def pooled_features(self, stage_maps: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The head's pooled representation (before the classifier) from the NCHW stage maps."""
        if self.config.use_clip_projector:
            fused = F.pixel_shuffle(self.dcnv3_head_x4(stage_maps[-1]), 2) + self.dcnv3_head_x3(stage_maps[-2])
            return self.fc_norm(self.clip_projector(fused.flatten(2).transpose(1, 2)))
        return self.conv_head(stage_maps[-1]).mean(dim=(2, 3))

    @strict_forward_kwargs
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutputWithNoAttention:
        """(N, C, H, W) pixels (+ optional (N,) labels) → (N, num_labels) logits and the loss."""
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        outputs = self.internimage(pixel_values, output_hidden_states=True)
        logits = self.classifier(self.pooled_features(outputs.hidden_states[1:]))
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        return ImageClassifierOutputWithNoAttention(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states if output_hidden_states else None
        )


__all__ = [
    "InternImageBackbone",
    "InternImageForImageClassification",
    "InternImageModel",
    "InternImagePreTrainedModel",
]
