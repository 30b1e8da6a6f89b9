"""Regression objectives: predict pixels or a teacher's features at (masked) positions.

Both are lower bounds on the mutual information between the visible input and the target under a Gaussian (MSE) or
Laplace-like (smooth-L1 / L1) predictive model, or an alignment of directions (cosine).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

# Variance floor of MAE's per-patch target normalisation (norm_pix_loss).
PATCH_NORM_EPS = 1e-6


def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cuts images into flattened patches (MAE layout: pixels of a patch in (row, column, channel) order).

    Args:
        pixel_values: (B, C, H, W) with H and W divisible by `patch_size`.
        patch_size: p.

    Returns:
        (B, (H/p)*(W/p), p*p*C).
    """
    if pixel_values.dim() != 4:
        raise ValueError(f"pixel_values must have shape (B, C, H, W), got {tuple(pixel_values.shape)}.")
    if patch_size < 1:
        raise ValueError(f"patch_size must be at least 1, got {patch_size}.")
    batch, channels, height, width = pixel_values.shape
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"Image size {height}x{width} is not divisible by the patch size {patch_size}: resize or crop the images "
            f"to a multiple of {patch_size}."
        )
    grid_h, grid_w = height // patch_size, width // patch_size
    patches = pixel_values.reshape(batch, channels, grid_h, patch_size, grid_w, patch_size)
    patches = torch.einsum("bchpwq->bhwpqc", patches)
    return patches.reshape(batch, grid_h * grid_w, patch_size * patch_size * channels)


def unpatchify(
    patches: torch.Tensor, patch_size: int, grid_size: tuple[int, int] | int, num_channels: int = 3
) -> torch.Tensor:
    """Inverse of `patchify`.

    Args:
        patches: (B, h*w, p*p*C).
        patch_size: p.
        grid_size: (h, w) or one int.
        num_channels: C.

    Returns:
        (B, C, h*p, w*p).
    """
    grid_h, grid_w = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    expected = (grid_h * grid_w, patch_size * patch_size * num_channels)
    if patches.dim() != 3 or tuple(patches.shape[1:]) != expected:
        raise ValueError(
            f"patches must have shape (B, h*w, p*p*C) = (B, {expected[0]}, {expected[1]}) for a {grid_h}x{grid_w} "
            f"grid, patch size {patch_size} and {num_channels} channels, got {tuple(patches.shape)}."
        )
    batch = patches.shape[0]
    images = patches.reshape(batch, grid_h, grid_w, patch_size, patch_size, num_channels)
    images = torch.einsum("bhwpqc->bchpwq", images)
    return images.reshape(batch, num_channels, grid_h * patch_size, grid_w * patch_size)


def normalize_patches(patches: torch.Tensor, eps: float = PATCH_NORM_EPS) -> torch.Tensor:
    """Per-patch standardisation of pixel targets (MAE's norm_pix_loss; unbiased variance as the original).

    Args:
        patches: (..., D) with D >= 2 (the unbiased variance of one value is undefined).
        eps: Variance floor, >= 0.

    Returns:
        (..., D) `(patches - mean) / sqrt(var + eps)` per patch.
    """
    if patches.shape[-1] < 2:
        raise ValueError(
            f"normalize_patches needs at least 2 values per patch (last dimension), got shape {tuple(patches.shape)}."
        )
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}.")
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps) ** 0.5


def layer_norm_no_affine(features: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LayerNorm over the last dimension without learned scale or shift (used on teacher targets)."""
    return F.layer_norm(features, features.shape[-1:], eps=eps)


def _check_token_shapes(
    predictions: torch.Tensor, targets: torch.Tensor, bool_masked_pos: torch.Tensor | None
) -> None:
    """Raises a ValueError unless predictions and targets are both (B, N, D) and the mask (if any) is (B, N).

    Elementwise losses would otherwise broadcast mismatched shapes silently (e.g. (B, N, 1) against (B, N, D)).
    """
    if predictions.dim() != 3 or predictions.shape != targets.shape:
        raise ValueError(
            f"predictions and targets must both have shape (batch_size, num_tokens, dim), got predictions "
            f"{tuple(predictions.shape)} and targets {tuple(targets.shape)}: they are compared elementwise and "
            "must not broadcast."
        )
    if predictions.shape[0] == 0 or predictions.shape[1] == 0:
        raise ValueError(f"The loss got an empty batch: predictions have shape {tuple(predictions.shape)}.")
    if bool_masked_pos is not None and tuple(bool_masked_pos.shape) != tuple(predictions.shape[:2]):
        raise ValueError(
            f"bool_masked_pos must have shape (batch_size, num_tokens) = {tuple(predictions.shape[:2])} to match "
            f"the predictions, got {tuple(bool_masked_pos.shape)}."
        )


def _select(values: torch.Tensor, bool_masked_pos: torch.Tensor | None) -> torch.Tensor:
    """Token-wise values (B, N) averaged over masked tokens, or over all tokens when no mask is given."""
    if bool_masked_pos is None:
        return values.mean()
    weights = bool_masked_pos.to(values.dtype)
    count = weights.sum()
    # A mask that selects nothing would give a loss of 0 with no gradient: training would silently learn nothing.
    if not torch.compiler.is_compiling() and count.item() == 0:
        raise ValueError(
            "bool_masked_pos masks no token in the whole batch, so a loss over masked tokens is empty: mask at "
            "least one token (check mask_ratio / num_masking_patches), or pass bool_masked_pos=None to count "
            "every token."
        )
    return (values * weights).sum() / count.clamp_min(1.0)


def pixel_reconstruction_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    bool_masked_pos: torch.Tensor | None = None,
    *,
    normalize_target: bool = False,
    eps: float = PATCH_NORM_EPS,
) -> torch.Tensor:
    """Mean squared error on patch pixels, MAE style.

    Args:
        predictions: (B, N, D) predicted patch pixels.
        targets: (B, N, D) true patch pixels (e.g. from `patchify`).
        bool_masked_pos: (B, N) bool; when given, only masked tokens count, else every token.
        normalize_target: Standardise each target patch first (MAE's norm_pix_loss).
        eps: Variance floor of the standardisation.

    Returns:
        Scalar: per-token MSE (averaged over D), averaged over the counted tokens.

    Raises:
        ValueError: shapes differ (no broadcasting), the batch is empty, or the mask selects no token.
    """
    _check_token_shapes(predictions, targets, bool_masked_pos)
    if normalize_target:
        targets = normalize_patches(targets, eps)
    per_token = (predictions - targets).pow(2).mean(dim=-1)
    return _select(per_token, bool_masked_pos)


FeatureLossType = Literal["smooth_l1", "mse", "l1", "cosine"]


def feature_regression_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    bool_masked_pos: torch.Tensor | None = None,
    *,
    loss_type: FeatureLossType = "smooth_l1",
    normalize_target: bool = False,
    target_norm_eps: float = 1e-6,
    beta: float = 1.0,
) -> torch.Tensor:
    """Regression of predicted token features onto a (teacher's) target.

    Args:
        predictions: (B, N, D).
        targets: (B, N, D); treated as constants (detached).
        bool_masked_pos: (B, N) bool; when given, only masked tokens count, else every token.
        loss_type: "smooth_l1" (beta), "mse", "l1" (element means, as `nn.SmoothL1Loss()` etc.), or "cosine"
            (1 - cosine similarity per token).
        normalize_target: Apply LayerNorm without affine to the target first.
        target_norm_eps: Epsilon of that LayerNorm.
        beta: Smooth-L1 transition point.

    Returns:
        Scalar loss averaged over the counted tokens (and over D for the elementwise types).

    Raises:
        ValueError: shapes differ (no broadcasting), the batch is empty, the mask selects no token, or the
            loss type is unknown.
    """
    _check_token_shapes(predictions, targets, bool_masked_pos)
    if beta <= 0 and loss_type == "smooth_l1":
        raise ValueError(f"beta (the smooth-L1 transition point) must be > 0, got {beta}; use loss_type='l1'.")
    targets = targets.detach()
    if normalize_target:
        targets = layer_norm_no_affine(targets, target_norm_eps)
    if loss_type == "cosine":
        per_token = 1.0 - F.cosine_similarity(predictions.float(), targets.float(), dim=-1)
    elif loss_type == "smooth_l1":
        per_token = F.smooth_l1_loss(predictions, targets, reduction="none", beta=beta).mean(dim=-1)
    elif loss_type == "mse":
        per_token = F.mse_loss(predictions, targets, reduction="none").mean(dim=-1)
    elif loss_type == "l1":
        per_token = F.l1_loss(predictions, targets, reduction="none").mean(dim=-1)
    else:
        raise ValueError(f"Unknown loss_type {loss_type!r}: use one of 'smooth_l1', 'mse', 'l1', 'cosine'.")
    return _select(per_token, bool_masked_pos)
