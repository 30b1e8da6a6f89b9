"""Does pre-training learn? Frozen-feature evaluation shared by every method.

- `extract_features`: pooled final (and per-layer / per-stage) features of any of our models, via their outputs;
- `knn_accuracy`: cosine kNN with `exp(sim / T)`-weighted votes (k=20, T=0.07 by default);
- `linear_probe`: logistic regression on standardised frozen features with a fixed, seeded recipe;
- `evaluate_probe` / `load_image_folder`: both on labelled image folders (the `evaluate-probe` command);
- `KNNCallback` (in `hf_unified_pretrain.training.callbacks`) logs kNN accuracy during pre-training.

Accuracy is computed here directly: the `evaluate` library's metrics are loaded from the Hub at run time, which does
not work offline, and a mean of correct predictions needs no library.
"""

from .features import (
    POOLED,
    extract_features,
    feature_encoder,
    load_feature_model,
    num_patch_tokens,
    pool_tokens,
    pooled_outputs,
    suffix_token_count,
)
from .knn import DEFAULT_K, DEFAULT_TEMPERATURE, knn_accuracy, knn_class_scores
from .linear_probe import DEFAULT_EPOCHS, LinearProbeResult, linear_probe
from .probe import LabelledImages, evaluate_probe, list_image_folder, load_image_folder, probe_transform

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_K",
    "DEFAULT_TEMPERATURE",
    "POOLED",
    "LabelledImages",
    "LinearProbeResult",
    "evaluate_probe",
    "extract_features",
    "feature_encoder",
    "knn_accuracy",
    "knn_class_scores",
    "linear_probe",
    "list_image_folder",
    "load_feature_model",
    "load_image_folder",
    "num_patch_tokens",
    "pool_tokens",
    "pooled_outputs",
    "probe_transform",
    "suffix_token_count",
]
