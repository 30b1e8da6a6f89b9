"""Dense (per-token) cross-view objective in the UniGrad form used by SiameseIM and M3I's image branch.

The loss pulls each predicted token towards its target token (`pos`) and pushes predictions away from the directions
in which targets are correlated (`neg`, a quadratic form with the target correlation matrix). The negative term plays
the part of InfoNCE's negatives without pairwise scores, so its cost is O(D^2) instead of O((BN)^2).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .contrastive import distributed_is_active

UNIGRAD_NEG_WEIGHT = 0.02
UNIGRAD_NORM_EPS = 1e-5


def target_correlation(targets: torch.Tensor, *, reduce_distributed: bool = True) -> torch.Tensor:
    """C = t^T t / N over the rows of `targets` (N, D), averaged over processes when a process group runs.

    Returns:
        (D, D), detached from the graph (targets are never optimised through the negative term).
    """
    targets = targets.detach()
    correlation = targets.T @ targets / targets.shape[0]
    if reduce_distributed and distributed_is_active():
        dist.all_reduce(correlation)
        correlation = correlation / dist.get_world_size()
    return correlation


def unigrad_dense_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    *,
    neg_weight: float = UNIGRAD_NEG_WEIGHT,
    normalize_predictions: bool = False,
    eps: float = UNIGRAD_NORM_EPS,
    reduce_distributed: bool = True,
) -> torch.Tensor:
    """UniGrad dense loss: `(pos + neg_weight * neg) / D` over every (prediction, target) token pair.

    With p and t the token rows (N = B * L rows of D), t LayerNorm-ed without affine:
    `pos = mean_i ||p_i - t_i||^2`, `neg = mean_i p_i C p_i^T` with `C = t^T t / N` (averaged over processes).
    SiameseIM normalises the targets always and the predictions only with `--online_ln` (off by default, and off in
    its released recipe), hence `normalize_predictions=False` by default.

    Args:
        predictions: (B, L, D) or (N, D), the online branch's predicted tokens.
        targets: same shape as `predictions`, the target branch's tokens (used without gradient).
        neg_weight: Weight of the negative (correlation) term.
        normalize_predictions: Also LayerNorm (no affine) the predictions.
        eps: LayerNorm epsilon (PyTorch's default, as in the original).
        reduce_distributed: Average the correlation matrix over processes (the original all-reduces it).

    Returns:
        Scalar loss in float32.
    """
    if predictions.shape != targets.shape or predictions.dim() not in (2, 3):
        raise ValueError(
            "predictions and targets must have the same shape, (batch_size, num_tokens, dim) or (num_rows, dim), "
            f"with row i of one paired with row i of the other; got {tuple(predictions.shape)} and "
            f"{tuple(targets.shape)}."
        )
    if predictions.numel() == 0:
        raise ValueError(f"predictions hold no token (shape {tuple(predictions.shape)}): nothing to compare.")
    dim = predictions.shape[-1]
    predictions = predictions.float().reshape(-1, dim)
    targets = F.layer_norm(targets.detach().float().reshape(-1, dim), (dim,), eps=eps)
    if normalize_predictions:
        predictions = F.layer_norm(predictions, (dim,), eps=eps)
    pos = (predictions - targets).pow(2).sum(-1).mean()
    correlation = target_correlation(targets, reduce_distributed=reduce_distributed)
    neg = ((predictions @ correlation) * predictions).sum(-1).mean()
    return (pos + neg_weight * neg) / dim
