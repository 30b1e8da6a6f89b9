"""Objectives: every pre-training method maximises a bound on the mutual information between inputs and targets.

Pure functions (and no state): reconstruction (pixels, features), contrastive (InfoNCE, image-text), dense
cross-view prediction (UniGrad) and classification (hard or soft labels); `weighted_total` combines named parts.
"""

from .combine import weighted_total
from .contrastive import (
    all_gather_with_grad,
    cross_entropy_loss,
    distributed_is_active,
    image_text_contrastive_loss,
    info_nce_loss,
)
from .dense import UNIGRAD_NEG_WEIGHT, target_correlation, unigrad_dense_loss
from .local_global import local_global_nce_loss, local_global_nce_scores, symmetric_info_nce_loss, tanh_clip
from .reconstruction import (
    PATCH_NORM_EPS,
    feature_regression_loss,
    layer_norm_no_affine,
    normalize_patches,
    patchify,
    pixel_reconstruction_loss,
    unpatchify,
)

__all__ = [
    "PATCH_NORM_EPS",
    "UNIGRAD_NEG_WEIGHT",
    "all_gather_with_grad",
    "cross_entropy_loss",
    "distributed_is_active",
    "feature_regression_loss",
    "image_text_contrastive_loss",
    "info_nce_loss",
    "layer_norm_no_affine",
    "local_global_nce_loss",
    "local_global_nce_scores",
    "normalize_patches",
    "patchify",
    "pixel_reconstruction_loss",
    "symmetric_info_nce_loss",
    "tanh_clip",
    "target_correlation",
    "unigrad_dense_loss",
    "unpatchify",
    "weighted_total",
]
