"""Local–global NCE (Deep InfoMax / AMDIM) and a symmetric two-view InfoNCE.

A source vector (a global feature, or one local feature) is scored against every spatial location of every image's
target map. Its positives are all locations of the same image; each positive is contrasted with every location of
every other image (the other positives are not negatives). Scores are scaled, regularised by their mean square and
soft-clipped with `tclip * tanh(score / tclip)`, as in AMDIM (Bachman et al., 2019).

Under DDP the target maps of every process are gathered with gradients, so the negatives are the whole global
batch and the mean of the per-process losses equals the single-process loss on the full batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .contrastive import all_gather_with_grad, distributed_is_active, info_nce_loss


def tanh_clip(scores: torch.Tensor, clip_value: float | None) -> torch.Tensor:
    """Soft clip to (-clip_value, clip_value): `clip_value * tanh(scores / clip_value)`; None leaves scores as is."""
    if clip_value is None:
        return scores
    return clip_value * torch.tanh(scores / clip_value)


def local_global_nce_scores(
    sources: torch.Tensor,
    targets: torch.Tensor,
    *,
    tclip: float | None = 20.0,
    score_scale: float | None = None,
    gather_distributed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """NCE log-probabilities of every positive (source, target location) pair, and the mean squared raw score.

    Args:
        sources: (B, D) or (B, K, D): one or K source vectors per image (K mixture components, say).
        targets: (B, D, H, W) local feature maps (any H, W).
        tclip: Soft clipping range of the scores (AMDIM: 20); None disables clipping.
        score_scale: Multiplier of the dot products; default `D ** -0.5`.
        gather_distributed: Contrast against the target maps of every process (gradients flow to all of them).

    Returns:
        `log_probs` (B, H*W) or (B, K, H*W): log-softmax of each positive score against itself and all locations of
        the other images; `mean_square` (scalar): mean of the squared scaled scores before clipping, over all
        (source, image, location) triples of this process.
    """
    squeeze = sources.dim() == 2
    if squeeze:
        sources = sources.unsqueeze(1)
    if sources.dim() != 3 or targets.dim() != 4:
        raise ValueError(
            f"sources must be (B, D) or (B, K, D) and targets (B, D, H, W); got {tuple(sources.shape)} and "
            f"{tuple(targets.shape)}."
        )
    batch_size, _, dim = sources.shape
    if targets.shape[0] != batch_size or targets.shape[1] != dim:
        raise ValueError(
            f"sources {tuple(sources.shape)} and targets {tuple(targets.shape)} must share the batch size and the "
            "feature dimension (dim 1 of the targets)."
        )
    offset = 0
    if gather_distributed and distributed_is_active():
        offset = dist.get_rank() * batch_size
        targets = all_gather_with_grad(targets)
    num_images = targets.shape[0]
    flat_targets = targets.flatten(2)  # (N, D, L)
    scale = dim**-0.5 if score_scale is None else score_scale
    # (B, K, N, L): every source against every location of every image
    raw = torch.einsum("bkd,ndl->bknl", sources, flat_targets).float() * scale
    mean_square = raw.square().mean()
    scores = tanh_clip(raw, tclip)

    own = torch.arange(batch_size, device=sources.device) + offset
    positive_mask = torch.zeros(batch_size, num_images, dtype=torch.bool, device=sources.device)
    positive_mask[torch.arange(batch_size, device=sources.device), own] = True
    positives = scores[torch.arange(batch_size, device=sources.device), :, own]  # (B, K, L)
    negatives = scores.masked_fill(positive_mask[:, None, :, None], float("-inf")).flatten(2)  # (B, K, N*L)
    negative_lse = torch.logsumexp(negatives, dim=-1, keepdim=True)  # (B, K, 1), shared by the positives
    log_probs = positives - torch.logaddexp(positives, negative_lse)
    return (log_probs.squeeze(1) if squeeze else log_probs), mean_square


def local_global_nce_loss(
    sources: torch.Tensor,
    targets: torch.Tensor,
    *,
    tclip: float | None = 20.0,
    score_scale: float | None = None,
    gather_distributed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local–global NCE: minus the mean log-probability of every positive pair (see `local_global_nce_scores`).

    Args:
        sources: (B, D) source vectors (a global feature, or one sampled local feature per image).
        targets: (B, D, H, W) local feature maps.
        tclip: Soft clipping range of the scores; None disables clipping.
        score_scale: Multiplier of the dot products; default `D ** -0.5`.
        gather_distributed: Use every process's target maps as negatives.

    Returns:
        `(loss, mean_square)`: scalar NCE loss (mean over this process's sources and locations) and the mean squared
        raw score (AMDIM penalises `0.05 *` it).
    """
    log_probs, mean_square = local_global_nce_scores(
        sources, targets, tclip=tclip, score_scale=score_scale, gather_distributed=gather_distributed
    )
    return -log_probs.mean(), mean_square


def symmetric_info_nce_loss(
    view_1: torch.Tensor,
    view_2: torch.Tensor,
    *,
    temperature: float = 0.1,
    normalize: bool = True,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """Two-view InfoNCE in both directions: view 1 → view 2 and view 2 → view 1, averaged.

    Args:
        view_1: (B, D) embeddings of the first view.
        view_2: (B, D) embeddings of the second view (row i is the positive of row i of `view_1`).
        temperature: Softmax temperature.
        normalize: L2-normalise first (cosine scores).
        gather_distributed: Candidates from every process.

    Returns:
        Scalar mean of the two directional InfoNCE losses.
    """
    forward = info_nce_loss(
        view_1, view_2, temperature=temperature, normalize=normalize, gather_distributed=gather_distributed
    )
    backward = info_nce_loss(
        view_2, view_1, temperature=temperature, normalize=normalize, gather_distributed=gather_distributed
    )
    return (forward + backward) / 2


__all__ = ["local_global_nce_loss", "local_global_nce_scores", "symmetric_info_nce_loss", "tanh_clip"]
