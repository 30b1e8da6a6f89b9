# Copyright 2026 The hf_unified_pretrain Authors. Licensed under the Apache License, Version 2.0.
"""AMDIM configuration: the multi-scale convolutional encoder of Augmented Multiscale Deep InfoMax and its NCE losses."""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.backbone_utils import BackboneConfigMixin

from ..config_checks import check_preset_overrides

# Encoder layouts of the original `Encoder` (amdim-public, model.py), one entry per module of its `layer_list`:
#   ("conv", in, out, kernel, stride, padding, pad_mode)   Conv3x3: pad → conv (bias) → ReLU
#   ("unit", in, out, kernel, stride)                       a single ConvResNxN
#   ("block", in, out, kernel, stride)                      ConvResBlock: a ConvResNxN + (n_depth - 1) 1x1 ones
#   ("norm", channels, always)                              MaybeBatchNorm2d (active if `always` or use_bn)
# Channel entries are multiples of ndf; "rkhs" stands for n_rkhs.
_LAYOUTS: dict[int, list[tuple]] = {
    32: [
        ("conv", "in", 1, 3, 1, 0, "constant"),
        ("unit", 1, 1, 1, 1),
        ("block", 1, 2, 4, 2),
        ("block", 2, 4, 2, 2),
        ("norm", 4, False),
        ("block", 4, 4, 3, 1),
        ("block", 4, 4, 3, 1),
        ("unit", 4, "rkhs", 3, 1),
        ("norm", "rkhs", True),
    ],
    64: [
        ("conv", "in", 1, 3, 1, 0, "constant"),
        ("block", 1, 2, 4, 2),
        ("block", 2, 4, 4, 2),
        ("block", 4, 8, 2, 2),
        ("norm", 8, False),
        ("block", 8, 8, 3, 1),
        ("block", 8, 8, 3, 1),
        ("unit", 8, "rkhs", 3, 1),
        ("norm", "rkhs", True),
    ],
    128: [
        ("conv", "in", 1, 5, 2, 2, "reflect"),
        ("conv", 1, 1, 3, 1, 0, "constant"),
        ("block", 1, 2, 4, 2),
        ("block", 2, 4, 4, 2),
        ("block", 4, 8, 2, 2),
        ("norm", 8, False),
        ("block", 8, 8, 3, 1),
        ("block", 8, 8, 3, 1),
        ("unit", 8, "rkhs", 3, 1),
        ("norm", "rkhs", True),
    ],
}

# Presets: the original's training defaults (ndf 128 / rkhs 1024 / depth 3), the released ImageNet checkpoints
# (AMDIM-Medium ndf 256 / rkhs 2048 / depth 10, AMDIM-Large ndf 320 / 2560 / 10, both 128 px), the CIFAR-10 command of
# the authors (issue #3: 32 px, ndf 256 / 2048 / 10) and a tiny 32-px configuration for tests and CPU runs.
AMDIM_PRESETS: dict[str, dict[str, Any]] = {
    "default": {"image_size": 128, "ndf": 128, "n_rkhs": 1024, "n_depth": 3},
    "medium": {"image_size": 128, "ndf": 256, "n_rkhs": 2048, "n_depth": 10},
    "large": {"image_size": 128, "ndf": 320, "n_rkhs": 2560, "n_depth": 10},
    "cifar10": {"image_size": 32, "ndf": 256, "n_rkhs": 2048, "n_depth": 10, "num_labels": 10},
    "tiny": {"image_size": 32, "ndf": 16, "n_rkhs": 64, "n_depth": 1, "num_labels": 10, "classifier_hidden_size": 64},
}

_CLASSIFIER_TYPES = ("mlp", "linear")


@strict
class AMDIMConfig(BackboneConfigMixin, PreTrainedConfig):
    r"""Configuration of AMDIM (Augmented Multiscale Deep InfoMax, Bachman, Hjelm & Buchwalter, NeurIPS 2019).

    The encoder is a fix-up style residual ConvNet (no BatchNorm inside the trunk unless `use_bn`) whose final 1x1 map
    (`r1`, global) and two of its local maps, 5x5 and 7x7 at the nominal resolution, pass through 1x1 "fake RKHS"
    embedding heads (`r5`, `r7`). Pre-training maximises NCE bounds between the two augmented views: global → local
    (1→5, 1→7) and local → local (one random 5x5 location → the other view's 5x5 map), each in both directions.

    Args:
        image_size: Nominal input size of the encoder layout: 32 (CIFAR), 64 (STL-10) or 128 (ImageNet), the
            original's `encoder_size`. Larger inputs also run (the maps grow).
        num_channels: Input channels.
        ndf: Base width of the encoder (the original's `ndf`).
        n_rkhs: Width of the embeddings r1 / r5 / r7 (the original's `n_rkhs`).
        n_depth: Residual units per block (1 strided + n_depth - 1 1x1 ones; the original's `n_depth`).
        use_bn: BatchNorm inside the trunk and in the embedding heads' hidden layer (the final 1x1 map and the
            embedding heads' outputs are always batch-normalised).
        tclip: Soft clipping range of the NCE scores, `tclip * tanh(score / tclip)`.
        score_regularizer: Coefficient of the squared-score penalty (`lgt_reg` = mean over the six NCE terms of
            `score_regularizer * mean(score ** 2)`, summed over the two directions and halved, as the original).
        num_mixture_components: Mixture-based global features, the paper's extension (its abstract: "segmentation
            behaviour emerges"); 1 (the default) disables it. **Unverified form**: the original code has no mixtures
            (amdim-public @ 8754ae14) and the paper's section was not readable here, so this follows the paper as
            remembered; see `AMDIMForPreTraining` (mixtures) for every assumption. With k > 1 the global feature is
            expanded into k features by a one-hidden-layer MLP with a residual connection, and each global→local
            term (1→5 and 1→7, both directions) becomes `-mean_i[sum_j q_ij * s_ij] - alpha * mean_i H(q_i)` with
            `s_ij` the NCE log-probability of location i under component j and `q_i = softmax_j(tau * s_ij)`.
        mixture_entropy_weight: The entropy weight alpha of the mixture objective (our default; unverified).
        mixture_temperature: Temperature tau of the mixture posterior q (our default; unverified).
        mixture_hidden_size: Hidden width of the mixture MLP (default n_rkhs; unverified).
        use_online_classifiers: Train the original's online evaluation heads (an MLP and a linear classifier) on the
            detached global features during pre-training when `labels` are given.
        classifier_hidden_size: Hidden width of the MLP evaluation head (original: 1024).
        classifier_dropout: Dropout of the MLP evaluation head (original: 0.2; the linear head has none).
        classifier_logit_clip: tanh clip of the classifier logits inside the cross-entropy (original: 10).
        classifier_logit_regularizer: Coefficient of the mean squared logit added to the classifier loss (1e-3).
        classifier_type: Head of `AMDIMForImageClassification`: "mlp" or "linear".
        classifier_detach_features: Train only the head of `AMDIMForImageClassification` (the original's
            evaluation protocol: the encoder gets no gradient); False fine-tunes the encoder too.
        loss_weights: Weights of the named loss parts in `loss` (missing parts weigh 1).
        channels_last: Run the encoder's convolutions on channels-last (NHWC) tensors. Off by default: on the
            2-core CPU the 128-px ndf-128 training step measured 1.25x faster in NCHW (benchmarks/bench_amdim.py,
            quiet machine), and NCHW reproduces the original's outputs exactly (NHWC differs by ~1e-5 rounding).
            Measure on your hardware before switching it on.
        out_features / out_indices: Backbone stages ("stem", "stage1", ...) to return; see `stage_names`.
    """

    model_type = "amdim"

    image_size: int = 128
    num_channels: int = 3
    ndf: int = 128
    n_rkhs: int = 1024
    n_depth: int = 3
    use_bn: bool = False
    tclip: float | int = 20.0
    score_regularizer: float | int = 0.05
    num_mixture_components: int = 1
    mixture_entropy_weight: float | int = 0.1
    mixture_temperature: float | int = 1.0
    mixture_hidden_size: int | None = None
    use_online_classifiers: bool = True
    classifier_hidden_size: int = 1024
    classifier_dropout: float | int = 0.2
    classifier_logit_clip: float | int | None = 10.0
    classifier_logit_regularizer: float | int = 1e-3
    classifier_type: str = "mlp"
    classifier_detach_features: bool = False
    loss_weights: dict[str, float] | None = None
    channels_last: bool = False
    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None

    def __post_init__(self, **kwargs):
        if self.image_size not in _LAYOUTS:
            raise ValueError(
                f"image_size must be one of {sorted(_LAYOUTS)} (the original encoder layouts), got {self.image_size}."
            )
        self.stage_names = ["stem"] + [f"stage{index}" for index in range(1, len(self.stage_layer_indices))]
        self.set_output_features_output_indices(
            out_indices=kwargs.pop("out_indices", None), out_features=kwargs.pop("out_features", None)
        )
        super().__post_init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> AMDIMConfig:
        """Builds a preset configuration (see `AMDIM_PRESETS`), with overrides."""
        if name not in AMDIM_PRESETS:
            raise ValueError(f"Unknown AMDIM preset {name!r}; choose one of {sorted(AMDIM_PRESETS)}.")
        check_preset_overrides(cls, overrides)
        return cls(**{**AMDIM_PRESETS[name], **overrides})

    @property
    def layer_specs(self) -> list[tuple]:
        """The encoder's modules with concrete channel counts (see `_LAYOUTS`)."""

        def channels(value):
            if value == "in":
                return self.num_channels
            if value == "rkhs":
                return self.n_rkhs
            return value * self.ndf

        specs = []
        for spec in _LAYOUTS[self.image_size]:
            if spec[0] == "norm":
                specs.append(("norm", channels(spec[1]), spec[2]))
            else:
                specs.append((spec[0], channels(spec[1]), channels(spec[2]), *spec[3:]))
        return specs

    @property
    def feature_layer_indices(self) -> dict[str, int]:
        """Encoder layers whose outputs feed r1 (1x1), r5 (5x5) and r7 (7x7) at the nominal size.

        As the original's `dim2layer`: the LAST layer whose output has that spatial size (so the maps are taken after
        the (maybe) batch norms).
        """
        size, last_of_size = self.image_size, {}
        for index, spec in enumerate(self.layer_specs):
            size = _output_size(spec, size)
            last_of_size[size] = index
        return {"r1": last_of_size[1], "r5": last_of_size[5], "r7": last_of_size[7]}

    @property
    def stage_layer_indices(self) -> list[int]:
        """Backbone stages: every encoder layer output except those a following norm layer replaces."""
        specs = self.layer_specs
        return [i for i in range(len(specs)) if i + 1 >= len(specs) or specs[i + 1][0] != "norm"]

    @property
    def stage_channels(self) -> list[int]:
        """Channels of each backbone stage."""
        specs = self.layer_specs
        return [specs[i][1] if specs[i][0] == "norm" else specs[i][2] for i in self.stage_layer_indices]

    def validate_amdim_architecture(self):
        """Part of `@strict` validation: choices the model relies on."""
        if self.ndf <= 0 or self.n_rkhs <= 0 or self.n_depth <= 0:
            raise ValueError(
                f"ndf, n_rkhs and n_depth must be positive, got {self.ndf}, {self.n_rkhs}, {self.n_depth}."
            )
        if self.n_rkhs < (4 if self.image_size == 32 else 8) * self.ndf:
            raise ValueError(
                f"n_rkhs ({self.n_rkhs}) must be at least the width of the last encoder block (4 * ndf at 32 px, "
                "8 * ndf otherwise): the original's residual units only widen, never narrow."
            )
        if self.num_mixture_components < 1:
            raise ValueError(f"num_mixture_components must be >= 1, got {self.num_mixture_components}.")
        if self.classifier_type not in _CLASSIFIER_TYPES:
            raise ValueError(f"classifier_type must be one of {_CLASSIFIER_TYPES}, got {self.classifier_type!r}.")
        if self.tclip is not None and self.tclip <= 0:
            raise ValueError(f"tclip must be positive, got {self.tclip}.")
        if not 0 <= self.classifier_dropout < 1:
            raise ValueError(f"classifier_dropout must be in [0, 1), got {self.classifier_dropout}.")


def _output_size(spec: tuple, size: int) -> int:
    kind = spec[0]
    if kind == "norm":
        return size
    if kind == "conv":
        _, _, _, kernel, stride, padding, _ = spec
        return (size + 2 * padding - kernel) // stride + 1
    _, _, _, kernel, stride = spec
    return (size - kernel) // stride + 1


__all__ = ["AMDIM_PRESETS", "AMDIMConfig"]
