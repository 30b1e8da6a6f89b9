# Copyright 2026 The hf_unified_pretrain Authors. Licensed under the Apache License, Version 2.0.
"""AMDIM: Augmented Multiscale Deep InfoMax (Bachman, Hjelm, Buchwalter; NeurIPS 2019, arXiv 1906.00910).

Two augmentations of each image go through one convolutional encoder. From each view it takes a global feature
(`r1`, the final 1x1 map) and two local maps (`r5`, `r7`: 5x5 and 7x7 at the nominal size) passed through 1x1
embedding heads, and maximises NCE lower bounds on the mutual information between the views:

- 1→5 and 1→7: the global feature of one view against every location of the other view's local map;
- 5→5: one random location of one view's 5x5 map against the other view's 5x5 map;

each term in both directions, with scores `r_src · r_trg / sqrt(n_rkhs)` soft-clipped by `tclip * tanh(s / tclip)`
and penalised by their mean square (`lgt_reg`). Negatives are all locations of the other images (of every process
under DDP). Online evaluation heads (MLP and linear, as the original) learn from the detached global features.

Structure and numerics follow the original code (Philip-Bachman/amdim-public @ 8754ae14: `model.py`, `costs.py`):
the encoder's module list, its residual units with average-pool shortcuts zero-padded in channels, and the batch
norms that are always applied (the final map, the embedding heads' outputs) while the others follow `use_bn`.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.backbone_utils import BackboneMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BackboneOutput, ImageClassifierOutputWithNoAttention
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from ...layers import check_conv_pixels, strict_forward_kwargs
from ...objectives import local_global_nce_scores, tanh_clip, weighted_total
from .configuration_amdim import AMDIMConfig


@dataclass
class AMDIMModelOutput(ModelOutput):
    """Output of `AMDIMModel`.

    Args:
        last_hidden_state: (B, n_rkhs, h, w) the final (batch-normalised) map, 1x1 at the nominal size: r1.
        pooler_output: (B, n_rkhs) the global feature (r1 flattened; spatial mean for larger inputs).
        local_features_5: (B, n_rkhs, 5, 5) r5, the embedded 5x5 map (None without the local heads).
        local_features_7: (B, n_rkhs, 7, 7) r7, the embedded 7x7 map (None without the local heads).
        hidden_states: Tuple of the backbone stage outputs ("stem", "stage1", ...) when requested.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    local_features_5: torch.FloatTensor | None = None
    local_features_7: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class AMDIMForPreTrainingOutput(ModelOutput):
    """Output of `AMDIMForPreTraining`.

    Args:
        loss: Weighted total of `losses` (scalar).
        losses: Named parts: `g2l_1t5`, `g2l_1t7`, `g2l_5t5` (NCE terms averaged over both directions), `lgt_reg`
            (score regulariser), `mixture_entropy` (minus the weighted posterior entropy, with mixtures) and, with
            labels, `cls_mlp` / `cls_linear` (online classifiers on detached features).
        metrics: With labels, `accuracy_mlp` / `accuracy_linear` of the online classifiers on both views.
        global_features: (B, n_rkhs) r1 of the first view.
        features_1: (r1, r5, r7) maps of the first view.
        features_2: (r1, r5, r7) maps of the second view.
        source_locations: (B, 2) flat index into the 5x5 map of each image's source location (column 0: view 1).
        logits_mlp: (B, 2, num_labels) MLP evaluation head logits of both views, when the heads exist.
        logits_linear: (B, 2, num_labels) linear evaluation head logits of both views.
        hidden_states: Stage outputs of the first view, when requested.
    """

    loss: torch.FloatTensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    metrics: dict[str, torch.Tensor] | None = None
    global_features: torch.FloatTensor | None = None
    features_1: tuple[torch.FloatTensor, ...] | None = None
    features_2: tuple[torch.FloatTensor, ...] | None = None
    source_locations: torch.LongTensor | None = None
    logits_mlp: torch.FloatTensor | None = None
    logits_linear: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


def batch_norm_per_view(norm: nn.Module, hidden_states: torch.Tensor, num_views: int) -> torch.Tensor:
    """Applies `norm` to each of `num_views` equal chunks of the batch when it normalises with batch statistics.

    Both views go through the encoder as one batch (bigger convolutions, one weight gradient per layer), but the
    original encodes them in two calls, so a training-mode batch norm must see each view's statistics alone (and
    update its running statistics view 1 first, then view 2). Every other layer treats images independently.

    Args:
        norm: A batch norm or `nn.Identity`.
        hidden_states: (V * B, C, ...) the V views stacked along the batch.
        num_views: V.
    """
    per_batch = isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d)) and (norm.training or not norm.track_running_stats)
    if num_views == 1 or not per_batch:
        return norm(hidden_states)
    return torch.cat([norm(chunk) for chunk in hidden_states.chunk(num_views)])


class AMDIMZeroInitConv2d(nn.Conv2d):
    """The last 1x1 conv of a residual branch; it starts at zero (the original's fix-up style `init_weights`), so
    every residual unit and embedding head starts as its shortcut."""


class AMDIMIdentityInitConv2d(nn.Conv2d):
    """A 1x1 shortcut conv that starts near the identity: U(-0.01, 0.01) with ones on the diagonal (when it widens)."""


class AMDIMConv2d(nn.Conv2d):
    """`nn.Conv2d` (same parameters) that computes small output maps as one matrix product over unfolded patches.

    The encoder ends in 3x3 convolutions with 1024x1024x3x3 weights on maps of 7x7, 5x5 and 3x3 locations. On CPU,
    oneDNN's direct kernels use such shapes badly (few locations to vectorise over, and every call reorders the
    37 MB weight into its blocked layout and the gradient back), while an im2col product is one large GEMM on the
    weight as stored. Measured fwd+bwd at batch 16, one thread: 4.8x faster at 3x3 → 1x1, 2.5x at 5x5 → 3x3, 1.4x
    at 7x7 → 5x5 and at the 2x2-stride-2 14x14 → 7x7 conv; on larger maps oneDNN wins, so they keep `nn.Conv2d`.
    The sums run in another order, so outputs differ from `F.conv2d` by float rounding only.
    """

    # Output locations up to which the unfolded product is used (the 7x7 maps of the 128-px layout).
    max_gemm_locations = 49

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        kernel_h, kernel_w = self.kernel_size
        height, width = hidden_states.shape[-2:]
        out_h = (height - kernel_h) // self.stride[0] + 1
        out_w = (width - kernel_w) // self.stride[1] + 1
        use_gemm = (
            hidden_states.device.type == "cpu"
            and kernel_h * kernel_w > 1
            and out_h * out_w <= self.max_gemm_locations
            and self.padding == (0, 0)
            and self.dilation == (1, 1)
            and self.groups == 1
            and hidden_states.dim() == 4
        )
        if not use_gemm:
            return super().forward(hidden_states)
        patches = F.unfold(hidden_states, self.kernel_size, stride=self.stride)  # (B, C * kh * kw, L)
        # (O, C * kh * kw) @ (B, C * kh * kw, L) → (B, O, L): already the NCHW layout of the output map.
        output = torch.matmul(self.weight.view(self.out_channels, -1), patches)
        if self.bias is not None:
            output = output + self.bias[:, None]
        return output.view(hidden_states.shape[0], self.out_channels, out_h, out_w)


class AMDIMConvLayer(nn.Module):
    """The stem convolution: optional padding (zero or reflect), conv with bias, ReLU (the original's `Conv3x3`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, padding: int, pad_mode: str):
        super().__init__()
        self.padding = padding
        self.pad_mode = pad_mode
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, 0, bias=True)

    def forward(self, hidden_states: torch.Tensor, num_views: int = 1) -> torch.Tensor:
        if self.padding > 0:
            hidden_states = F.pad(hidden_states, (self.padding,) * 4, mode=self.pad_mode)
        # In place: the conv's backward needs its input, not its output.
        return F.relu(self.conv(hidden_states), inplace=True)


class AMDIMResidualUnit(nn.Module):
    """conv(kernel, stride) → (BN) → ReLU → 1x1 conv, plus an average-pooled shortcut zero-padded in channels.

    The original's `ConvResNxN`: no activation after the sum; the 1x1 conv starts at zero (fix-up style), so every
    unit starts as its shortcut.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, use_bn: bool):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"AMDIM residual units only widen: {in_channels} → {out_channels} channels.")
        self.kernel, self.stride = kernel, stride
        self.in_channels = in_channels
        self.conv1 = AMDIMConv2d(in_channels, out_channels, kernel, stride, 0, bias=False)
        self.norm = nn.BatchNorm2d(out_channels) if use_bn else nn.Identity()
        self.conv2 = AMDIMZeroInitConv2d(out_channels, out_channels, 1, 1, 0, bias=False)

    def forward(self, hidden_states: torch.Tensor, num_views: int = 1) -> torch.Tensor:
        residual = F.relu(batch_norm_per_view(self.norm, self.conv1(hidden_states), num_views), inplace=True)
        residual = self.conv2(residual)
        # A 1x1 stride-1 average pool is the identity: skip its copy (most units of a block are 1x1).
        shortcut = hidden_states
        if self.kernel != 1 or self.stride != 1:
            shortcut = F.avg_pool2d(hidden_states, self.kernel, self.stride, 0)
        # The shortcut zero-padded in channels only adds to the first `in_channels` maps; adding it in place there
        # spares the padded copy. The conv's backward does not need its output, so the in-place add is safe.
        if residual.shape[1] != self.in_channels:
            residual[:, : self.in_channels] += shortcut
            return residual
        return residual.add_(shortcut)


class AMDIMResidualBlock(GradientCheckpointingLayer):
    """One strided residual unit followed by `n_depth - 1` 1x1 units (the original's `ConvResBlock`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, depth: int, use_bn: bool):
        super().__init__()
        units = [AMDIMResidualUnit(in_channels, out_channels, kernel, stride, use_bn)]
        units += [AMDIMResidualUnit(out_channels, out_channels, 1, 1, use_bn) for _ in range(depth - 1)]
        self.units = nn.ModuleList(units)

    def forward(self, hidden_states: torch.Tensor, num_views: int = 1) -> torch.Tensor:
        for unit in self.units:
            hidden_states = unit(hidden_states, num_views)
        return hidden_states


class AMDIMEncoder(nn.Module):
    """The original's `layer_list`: stem convs, residual blocks/units and (maybe) batch norms, in that order."""

    def __init__(self, config: AMDIMConfig):
        super().__init__()
        layers = []
        for spec in config.layer_specs:
            kind = spec[0]
            if kind == "conv":
                layers.append(AMDIMConvLayer(*spec[1:]))
            elif kind == "unit":
                layers.append(AMDIMResidualUnit(*spec[1:], use_bn=config.use_bn))
            elif kind == "block":
                layers.append(AMDIMResidualBlock(*spec[1:], depth=config.n_depth, use_bn=config.use_bn))
            else:
                _, channels, always = spec
                layers.append(nn.BatchNorm2d(channels) if always or config.use_bn else nn.Identity())
        self.layers = nn.ModuleList(layers)
        self.channels_last = config.channels_last

    def forward(self, pixel_values: torch.Tensor, num_views: int = 1) -> list[torch.Tensor]:
        """(V * B, C, H, W), V views stacked along the batch (see `batch_norm_per_view`) → every layer's output."""
        if self.channels_last:
            # oneDNN's NHWC convolutions are markedly faster on CPU; the layout carries through the whole encoder.
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        outputs, hidden_states = [], pixel_values
        for layer in self.layers:
            if isinstance(layer, (AMDIMConvLayer, AMDIMResidualUnit, AMDIMResidualBlock)):
                hidden_states = layer(hidden_states, num_views)
            else:
                # A norm: ours, or the frozen batch norm DETR-style heads swap in for every nn.BatchNorm2d.
                hidden_states = batch_norm_per_view(layer, hidden_states, num_views)
            outputs.append(hidden_states)
        return outputs


class AMDIMEmbeddingHead(nn.Module):
    """1x1 conv → (BN) → ReLU → 1x1 conv (zero-init) plus a near-identity 1x1 shortcut, then BN (`FakeRKHSConvNet`)."""

    def __init__(self, in_channels: int, out_channels: int, use_bn: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.norm_hidden = nn.BatchNorm2d(out_channels) if use_bn else nn.Identity()
        self.conv2 = AMDIMZeroInitConv2d(out_channels, out_channels, 1, bias=False)
        self.shortcut = AMDIMIdentityInitConv2d(in_channels, out_channels, 1, bias=True)
        self.norm_out = nn.BatchNorm2d(out_channels)

    def forward(self, hidden_states: torch.Tensor, num_views: int = 1) -> torch.Tensor:
        residual = F.relu(batch_norm_per_view(self.norm_hidden, self.conv1(hidden_states), num_views), inplace=True)
        residual = self.conv2(residual).add_(self.shortcut(hidden_states))
        return batch_norm_per_view(self.norm_out, residual, num_views)


class AMDIMMixtureHead(nn.Module):
    """k mixture features from the global feature: a one-hidden-layer ReLU MLP whose k outputs are each added to the
    global feature (the paper's mixture extension as remembered; unverified, see `AMDIMForPreTraining`)."""

    def __init__(self, config: AMDIMConfig):
        super().__init__()
        hidden = config.mixture_hidden_size or config.n_rkhs
        self.num_components = config.num_mixture_components
        self.fc1 = nn.Linear(config.n_rkhs, hidden)
        self.fc2 = nn.Linear(hidden, config.num_mixture_components * config.n_rkhs)

    def forward(self, global_features: torch.Tensor) -> torch.Tensor:
        """(B, D) → (B, k, D)."""
        offsets = self.fc2(F.relu(self.fc1(global_features)))
        return global_features.unsqueeze(1) + offsets.view(global_features.shape[0], self.num_components, -1)


class AMDIMClassifierHead(nn.Module):
    """The original's evaluation heads (`MLPClassifier`): linear (dropout 0 → Linear) or MLP (dropout → Linear
    without bias → BatchNorm1d → ReLU → dropout → Linear)."""

    def __init__(self, config: AMDIMConfig, kind: str):
        super().__init__()
        num_labels = config.num_labels
        self.kind = kind
        if kind == "linear":
            self.dropout = nn.Identity()
            self.fc = nn.Linear(config.n_rkhs, num_labels)
        else:
            hidden = config.classifier_hidden_size
            self.dropout = nn.Dropout(config.classifier_dropout)
            self.fc1 = nn.Linear(config.n_rkhs, hidden, bias=False)
            self.norm = nn.BatchNorm1d(hidden)
            self.dropout_hidden = nn.Dropout(config.classifier_dropout)
            self.fc = nn.Linear(hidden, num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = self.dropout(features)
        if self.kind == "mlp":
            features = self.dropout_hidden(F.relu(self.norm(self.fc1(features))))
        return self.fc(features)


def amdim_classifier_loss(
    logits: torch.Tensor, labels: torch.Tensor, clip: float | None = 10.0, regularizer: float = 1e-3
) -> torch.Tensor:
    """The original's `loss_xent`: cross-entropy of tanh-clipped logits plus `regularizer * mean(logits ** 2)`.

    Labels of -1 are ignored (unlabelled images in a labelled batch).
    """
    return F.cross_entropy(tanh_clip(logits, clip), labels, ignore_index=-1) + regularizer * logits.square().mean()


class AMDIMPreTrainedModel(PreTrainedModel):
    config: AMDIMConfig
    base_model_prefix = "amdim"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["AMDIMResidualBlock", "AMDIMEmbeddingHead"]
    _supports_sdpa = False
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's default conv/linear init, then the original's `init_weights`: the second conv of every residual
        branch at zero and the embedding heads' shortcuts near the identity."""
        # Leaf modules only: transformers skips the init of a custom module without parameters of its own.
        if isinstance(module, AMDIMZeroInitConv2d):
            init.zeros_(module.weight)
        elif isinstance(module, AMDIMIdentityInitConv2d):
            out_channels, in_channels = module.weight.shape[:2]
            weight = torch.empty_like(module.weight).uniform_(-0.01, 0.01)
            if out_channels >= in_channels:
                identity = torch.eye(out_channels, in_channels, dtype=torch.bool).view(out_channels, in_channels, 1, 1)
                weight = weight.masked_fill(identity, 1.0)
            init.copy_(module.weight, weight)
            _default_bias_init(module)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            _default_bias_init(module)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)

    def no_weight_decay(self) -> set[str]:
        """No extra exemptions: biases and norm weights are already handled by the trainer."""
        return set()


def _default_bias_init(module: nn.Module) -> None:
    # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    if module.bias is not None:
        fan_in = module.weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(module.bias, -bound, bound)


class AMDIMModel(AMDIMPreTrainedModel):
    """The AMDIM encoder: global feature r1 and, with the local heads, the embedded local maps r5 and r7.

    Args:
        config: The configuration.
        add_local_heads: Build the r5 / r7 embedding heads (pre-training needs them; classifiers and backbones do not,
            so none of their parameters is left without gradient).
    """

    # The pre-training checkpoint's online evaluation heads and mixture head, dropped when only the encoder is loaded.
    _keys_to_ignore_on_load_unexpected = [r"^mixture_head\.", r"^(mlp|linear)_classifier\."]

    def __init__(self, config: AMDIMConfig, add_local_heads: bool = True):
        super().__init__(config)
        self.encoder = AMDIMEncoder(config)
        self.feature_layers = config.feature_layer_indices
        self.stage_layers = config.stage_layer_indices
        specs = config.layer_specs
        width = {name: _out_channels(specs[index]) for name, index in self.feature_layers.items()}
        self.embed_5 = AMDIMEmbeddingHead(width["r5"], config.n_rkhs, config.use_bn) if add_local_heads else None
        self.embed_7 = AMDIMEmbeddingHead(width["r7"], config.n_rkhs, config.use_bn) if add_local_heads else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.layers[0]

    @strict_forward_kwargs
    @can_return_tuple
    def forward(
        self, pixel_values: torch.Tensor | None = None, output_hidden_states: bool | None = None, **kwargs
    ) -> AMDIMModelOutput:
        r"""Encodes images into r1 (global) and, with the local heads, r5 / r7.

        Args:
            pixel_values: (B, C, H, W) with H, W >= `config.image_size`.
            output_hidden_states: Also return the backbone stage outputs.
        """
        _check_pixels(pixel_values, self)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        return self.encode_views(pixel_values, output_hidden_states=output_hidden_states)

    def encode_views(
        self, pixel_values: torch.Tensor, num_views: int = 1, output_hidden_states: bool = False
    ) -> AMDIMModelOutput:
        """Encodes `num_views` views stacked along the batch in one pass, each exactly as if encoded alone.

        Args:
            pixel_values: (V * B, C, H, W) view 1 of every image, then view 2, ... (already checked).
            num_views: V; training-mode batch norms normalise each view with its own statistics.
            output_hidden_states: Also return the stage outputs.

        Returns:
            `AMDIMModelOutput` over all V * B images, in the input order.
        """
        outputs = self.encoder(pixel_values, num_views)
        r1 = outputs[self.feature_layers["r1"]]
        r5 = self.embed_5(outputs[self.feature_layers["r5"]], num_views) if self.embed_5 is not None else None
        r7 = self.embed_7(outputs[self.feature_layers["r7"]], num_views) if self.embed_7 is not None else None
        hidden_states = tuple(outputs[index] for index in self.stage_layers) if output_hidden_states else None
        return AMDIMModelOutput(
            last_hidden_state=r1,
            pooler_output=r1.mean(dim=(2, 3)),
            local_features_5=r5,
            local_features_7=r7,
            hidden_states=hidden_states,
        )


def _out_channels(spec: tuple) -> int:
    return spec[1] if spec[0] == "norm" else spec[2]


def _check_pixels(pixel_values: torch.Tensor | None, module: AMDIMPreTrainedModel, name: str = "pixel_values") -> None:
    """Raises a clear error for pixel batches the encoder cannot use (rank, channels, size, dtype, raw values)."""
    config = module.config
    check_conv_pixels(
        pixel_values,
        num_channels=config.num_channels,
        min_size=config.image_size,
        model_name="AMDIM",
        why_min_size="needs at least the size of its encoder layout (config.image_size) to reach the 1x1 global map",
        image_size=config.image_size,
        dtype=module.dtype,
        training=module.training,
        name=name,
    )


class AMDIMBackbone(BackboneMixin, AMDIMPreTrainedModel):
    """AMDIM encoder as a multi-scale backbone (UperNet, ...): stages "stem", "stage1", ... are the encoder's
    successive maps (a map followed by a batch norm is taken after the norm)."""

    has_attentions = False
    _keys_to_ignore_on_load_unexpected = [
        r"(^|\.)embed_[57]\.",
        r"^(mlp|linear)_classifier\.",
        r"^mixture_head\.",
    ]

    def __init__(self, config: AMDIMConfig):
        super().__init__(config)
        self.num_features = config.stage_channels
        self.amdim = AMDIMModel(config, add_local_heads=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.amdim.get_input_embeddings()

    @strict_forward_kwargs
    @can_return_tuple
    def forward(
        self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None, **kwargs
    ) -> BackboneOutput:
        """(B, C, H, W) pixels → `feature_maps` of `config.out_features` (+ all stage outputs if asked)."""
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        stages = self.amdim(pixel_values, output_hidden_states=True).hidden_states
        feature_maps = tuple(stage for name, stage in zip(self.stage_names, stages) if name in self.out_features)
        return BackboneOutput(
            feature_maps=feature_maps, hidden_states=stages if output_hidden_states else None, attentions=None
        )


class AMDIMForPreTraining(AMDIMPreTrainedModel):
    """AMDIM pre-training: NCE between the global and local features of two views (1→5, 1→7, 5→5), tanh score
    clipping and the squared-score regulariser, plus the online evaluation heads when labels are given."""

    def __init__(self, config: AMDIMConfig):
        super().__init__(config)
        self.amdim = AMDIMModel(config)
        self.mixture_head = AMDIMMixtureHead(config) if config.num_mixture_components > 1 else None
        with_classifiers = config.use_online_classifiers and config.num_labels > 0
        self.mlp_classifier = AMDIMClassifierHead(config, "mlp") if with_classifiers else None
        self.linear_classifier = AMDIMClassifierHead(config, "linear") if with_classifiers else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.amdim.get_input_embeddings()

    def sample_source_locations(
        self, batch_size: int, num_locations: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The random source locations of the 5→5 term: (B, 2) flat indices, column 0 for view 1, 1 for view 2.

        Drawn on the CPU as the original does (`torch.randint(0, 25, (B,))` once per view), so with the same global
        seed the choices are the original's.
        """
        draws = [torch.randint(0, num_locations, (batch_size,), generator=generator) for _ in range(2)]
        return torch.stack(draws, dim=1)

    def _global_to_local(self, global_features, local_features):
        """One global→local term in one direction: (loss, mean squared score, entropy loss or None).

        With mixtures (`num_mixture_components` k > 1; off by default) the term is the paper's mixture objective AS
        REMEMBERED. The original code has no mixtures (amdim-public @ 8754ae14: none in model.py, costs.py or
        anywhere else) and the paper's section on them (arXiv 1906.00910, about §3.5) could not be read here: only
        its abstract ("when we extend our model to use mixture-based representations, segmentation behaviour emerges
        as a natural side-effect") and its introduction ("we introduce mixture-based representations") were found.
        Assumed, unverified:

        - the k mixture features come from the global feature through a one-hidden-layer ReLU MLP (hidden width
          `mixture_hidden_size`, default n_rkhs) with a residual connection to each component;
        - per target location i, component j's score is its NCE log-probability `s_ij` (the plain term's
          log-softmax against the other images' locations), and the term maximises
          `mean_i [sum_j q_ij * s_ij + alpha * H(q_i)]` with `q_i = softmax_j(tau * s_ij)` (the EM-like optimal
          posterior; gradients flow through q, it is not detached);
        - the paper (as remembered) writes it for the global→7x7 term; here it replaces both global→local terms
          (1→5 and 1→7) in both directions, while 5→5 stays plain;
        - every component's raw scores enter the squared-score regulariser;
        - alpha = `mixture_entropy_weight` (0.1) and tau = `mixture_temperature` (1.0) are our defaults.
        """
        config = self.config
        if self.mixture_head is None:
            log_probs, square = local_global_nce_scores(
                global_features, local_features, tclip=config.tclip, gather_distributed=True
            )
            return -log_probs.mean(), square, None
        components = self.mixture_head(global_features)
        log_probs, square = local_global_nce_scores(
            components, local_features, tclip=config.tclip, gather_distributed=True
        )  # (B, k, L)
        posterior = torch.softmax(config.mixture_temperature * log_probs, dim=1)
        nce = -(posterior * log_probs).sum(dim=1).mean()
        entropy = -(posterior * torch.log(posterior.clamp_min(1e-12))).sum(dim=1).mean()
        return nce, square, -config.mixture_entropy_weight * entropy

    @strict_forward_kwargs
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        pixel_values_2: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        source_locations: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> AMDIMForPreTrainingOutput:
        r"""Encodes both views, computes the NCE terms and (with labels) the online classifier losses.

        Args:
            pixel_values: (B, C, H, W) first view.
            pixel_values_2: (B, C, H, W) second view of the same images (`TwoViewTransform` + `TwoViewCollator`).
            labels: Optional (B,) class indices for the online evaluation heads (-1 = unlabelled).
            source_locations: Optional (B, 2) flat indices into the 5x5 maps of the 5→5 sources (column 0: view 1,
                column 1: view 2); drawn with `torch.randint` like the original when None.
            output_hidden_states: Also return the first view's stage outputs.
        """
        _check_pixels(pixel_values, self)
        _check_pixels(pixel_values_2, self, "pixel_values_2")
        if pixel_values_2.shape != pixel_values.shape:
            raise ValueError(
                f"The two views must have one shape; got {tuple(pixel_values.shape)} and "
                f"{tuple(pixel_values_2.shape)}."
            )
        config = self.config
        if output_hidden_states is None:
            output_hidden_states = config.output_hidden_states
        # One encoder pass over both views; batch norms still see each view alone, as in the original's two calls.
        encoded = self.amdim.encode_views(
            torch.cat([pixel_values, pixel_values_2]), num_views=2, output_hidden_states=output_hidden_states
        )
        r1_1, r1_2 = encoded.pooler_output.chunk(2)
        r5_1, r5_2 = encoded.local_features_5.chunk(2)
        r7_1, r7_2 = encoded.local_features_7.chunk(2)
        map_1, map_2 = encoded.last_hidden_state.chunk(2)
        hidden_states = None
        if output_hidden_states:
            hidden_states = tuple(stage[: pixel_values.shape[0]] for stage in encoded.hidden_states)

        batch_size, num_locations = r5_1.shape[0], r5_1.shape[2] * r5_1.shape[3]
        if source_locations is None:
            source_locations = self.sample_source_locations(batch_size, num_locations)
        source_locations = torch.as_tensor(source_locations)
        if source_locations.shape != (batch_size, 2) or source_locations.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"source_locations must be a (batch={batch_size}, 2) integer tensor (view 1, view 2), got "
                f"{source_locations.dtype} {tuple(source_locations.shape)}."
            )
        if bool((source_locations < 0).any() or (source_locations >= num_locations).any()):
            raise ValueError(f"source_locations must index the {num_locations} locations of the 5x5 map.")
        source_locations = source_locations.to(r5_1.device, torch.long)
        rows = torch.arange(batch_size, device=r5_1.device)
        r5_source_1 = r5_1.flatten(2)[rows, :, source_locations[:, 0]]
        r5_source_2 = r5_2.flatten(2)[rows, :, source_locations[:, 1]]

        terms, squares, entropy_terms = {}, [], []
        for name, (src_1, trg_2, src_2, trg_1) in {
            "g2l_1t5": (r1_1, r5_2, r1_2, r5_1),
            "g2l_1t7": (r1_1, r7_2, r1_2, r7_1),
        }.items():
            loss_a, square_a, entropy_a = self._global_to_local(src_1, trg_2)
            loss_b, square_b, entropy_b = self._global_to_local(src_2, trg_1)
            terms[name] = (loss_a + loss_b) / 2
            squares += [square_a, square_b]
            if entropy_a is not None:
                entropy_terms += [entropy_a, entropy_b]
        log_probs_a, square_a = local_global_nce_scores(r5_source_1, r5_2, tclip=config.tclip, gather_distributed=True)
        log_probs_b, square_b = local_global_nce_scores(r5_source_2, r5_1, tclip=config.tclip, gather_distributed=True)
        terms["g2l_5t5"] = -(log_probs_a.mean() + log_probs_b.mean()) / 2
        squares += [square_a, square_b]
        losses = dict(terms)
        losses["lgt_reg"] = config.score_regularizer * torch.stack(squares).sum() / 2
        if entropy_terms:
            losses["mixture_entropy"] = torch.stack(entropy_terms).sum() / 2

        logits_mlp = logits_linear = None
        metrics = None
        if self.mlp_classifier is not None:
            # The evaluation heads never send gradient into the encoder.
            features = encoded.pooler_output.detach()  # view 1 then view 2, as the original's torch.cat
            logits_mlp, logits_linear = self.mlp_classifier(features), self.linear_classifier(features)
            if labels is not None:
                both_labels = torch.cat([labels, labels]).to(logits_mlp.device)
                clip, reg = config.classifier_logit_clip, config.classifier_logit_regularizer
                losses["cls_mlp"] = amdim_classifier_loss(logits_mlp, both_labels, clip, reg)
                losses["cls_linear"] = amdim_classifier_loss(logits_linear, both_labels, clip, reg)
                labelled = both_labels >= 0
                metrics = {
                    "accuracy_mlp": _accuracy(logits_mlp, both_labels, labelled),
                    "accuracy_linear": _accuracy(logits_linear, both_labels, labelled),
                }
        loss = weighted_total(losses, {k: v for k, v in (config.loss_weights or {}).items() if k in losses})
        return AMDIMForPreTrainingOutput(
            loss=loss,
            losses=losses,
            metrics=metrics,
            global_features=r1_1,
            features_1=(map_1, r5_1, r7_1),
            features_2=(map_2, r5_2, r7_2),
            source_locations=source_locations,
            logits_mlp=_per_image(logits_mlp),
            logits_linear=_per_image(logits_linear),
            hidden_states=hidden_states,
        )


def _per_image(logits: torch.Tensor | None) -> torch.Tensor | None:
    """(2B, C) rows of view 1 then view 2 → (B, 2, C)."""
    return None if logits is None else torch.stack(logits.chunk(2), dim=1)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    hits = (logits.detach().argmax(dim=-1) == labels) & labelled
    return hits.sum().float() / labelled.sum().clamp_min(1).float()


class AMDIMForImageClassification(AMDIMPreTrainedModel):
    """AMDIM encoder with one of the original's evaluation heads (`config.classifier_type`: "mlp" or "linear") on the
    global feature. With `config.classifier_detach_features` only the head trains (the original's protocol)."""

    _keys_to_ignore_on_load_unexpected = [r"(^|\.)embed_[57]\.", r"^mixture_head\.", r"^(mlp|linear)_classifier\."]

    def __init__(self, config: AMDIMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.amdim = AMDIMModel(config, add_local_heads=False)
        head = AMDIMClassifierHead(config, config.classifier_type)
        # Named like the pre-training model's head of the same kind, so its trained online head loads directly.
        self.head_name = f"{config.classifier_type}_classifier"
        self.add_module(self.head_name, head)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.amdim.get_input_embeddings()

    @strict_forward_kwargs
    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutputWithNoAttention:
        """(B, C, H, W) pixels (+ optional labels) → (B, num_labels) logits; integer labels use the original's
        clipped cross-entropy (`amdim_classifier_loss`), other label types transformers' loss for the problem type."""
        outputs = self.amdim(pixel_values, output_hidden_states=output_hidden_states)
        features = outputs.pooler_output
        if self.config.classifier_detach_features:
            features = features.detach()
        logits = getattr(self, self.head_name)(features)
        loss = None
        if labels is not None:
            single_label = self.num_labels > 1 and labels.dtype in (torch.long, torch.int) and labels.dim() == 1
            if single_label and self.config.problem_type in (None, "single_label_classification"):
                loss = amdim_classifier_loss(
                    logits, labels, self.config.classifier_logit_clip, self.config.classifier_logit_regularizer
                )
            else:
                loss = self.loss_function(labels, logits, self.config)
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


__all__ = [
    "AMDIMBackbone",
    "AMDIMForImageClassification",
    "AMDIMForPreTraining",
    "AMDIMForPreTrainingOutput",
    "AMDIMModel",
    "AMDIMModelOutput",
    "AMDIMPreTrainedModel",
    "amdim_classifier_loss",
]
