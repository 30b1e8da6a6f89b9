"""Contrastive and classification objectives: InfoNCE (with negatives gathered across processes), image-text
contrast, and cross-entropy with hard or soft (mixed) labels.

InfoNCE is the classic lower bound on mutual information, I(q; k) >= log(K) - L_NCE for K candidates, which is why
gathering negatives from every process (larger K) tightens it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


class _AllGatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends every process the gradient of its own slice, summed over processes."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        gathered = [torch.zeros_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        return tuple(gathered)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack(grads)
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return stacked[dist.get_rank()]


def distributed_is_active() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenates `tensor` (B, ...) from every process along dim 0, keeping gradients (all_gather, not all_reduce).

    Returns:
        (world_size * B, ...), this process's slice at `rank * B`. Without a process group, `tensor` itself.
    """
    if not distributed_is_active():
        return tensor
    return torch.cat(_AllGatherWithGrad.apply(tensor), dim=0)


def _check_pairs(first: torch.Tensor, second: torch.Tensor, names: tuple[str, str]) -> None:
    if first.dim() != 2 or first.shape != second.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must both have shape (batch_size, dim) with row i of one paired with row i "
            f"of the other, got {tuple(first.shape)} and {tuple(second.shape)}."
        )
    if first.shape[0] == 0:
        raise ValueError(f"{names[0]} is an empty batch (batch_size 0): a contrastive loss needs at least one pair.")


def info_nce_loss(
    queries: torch.Tensor,
    keys: torch.Tensor,
    *,
    temperature: float = 0.1,
    normalize: bool = True,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """InfoNCE: each query's positive is the key at the same index; all other keys are negatives.

    Args:
        queries: (B, D).
        keys: (B, D).
        temperature: Softmax temperature.
        normalize: L2-normalise queries and keys first (cosine scores).
        gather_distributed: Use the keys of every process as candidates (gradients flow to all of them).

    Returns:
        Scalar, mean over this process's queries.
    """
    _check_pairs(queries, keys, ("queries", "keys"))
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    if normalize:
        queries, keys = F.normalize(queries, dim=-1), F.normalize(keys, dim=-1)
    offset = 0
    if gather_distributed and distributed_is_active():
        offset = dist.get_rank() * queries.shape[0]
        keys = all_gather_with_grad(keys)
    logits = queries @ keys.T / temperature
    labels = torch.arange(queries.shape[0], device=queries.device) + offset
    return F.cross_entropy(logits, labels)


def image_text_contrastive_loss(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    match: torch.Tensor | None = None,
    gather_distributed: bool = False,
) -> torch.Tensor:
    """Symmetric CLIP loss between paired image and text embeddings, optionally with soft (e.g. mixed) pairings.

    Args:
        image_embeds: (B, D).
        text_embeds: (B, D).
        logit_scale: Multiplier of the cosine similarities (CLIP: exp of a learned scalar).
        match: (B, B) how much image i shows caption j within this batch, each row summing to 1 (a mixed image
            shows its own caption and its partner's by area). Image→text targets are its rows, text→image targets
            its columns normalised to sum 1. Default: the identity (image i ↔ caption i), i.e. the CLIP loss.
        gather_distributed: Contrast against the pairs of every process. The pairings of `match` stay within this
            process's batch: the other processes' images and captions are negatives only.

    Returns:
        Scalar: mean of the image→text and text→image cross-entropies over this process's images and captions.
    """
    _check_pairs(image_embeds, text_embeds, ("image_embeds", "text_embeds"))
    batch = image_embeds.shape[0]
    if match is not None and tuple(match.shape) != (batch, batch):
        raise ValueError(
            f"match must be (batch_size, batch_size) = {(batch, batch)} (image i shows caption j by match[i, j]), "
            f"got {tuple(match.shape)}."
        )
    image_embeds, text_embeds = F.normalize(image_embeds, dim=-1), F.normalize(text_embeds, dim=-1)
    offset = 0
    all_images, all_texts = image_embeds, text_embeds
    if gather_distributed and distributed_is_active():
        offset = dist.get_rank() * batch
        all_images, all_texts = all_gather_with_grad(image_embeds), all_gather_with_grad(text_embeds)
    image_scores = logit_scale * image_embeds @ all_texts.T
    text_scores = logit_scale * text_embeds @ all_images.T
    if match is None:
        labels = torch.arange(batch, device=image_embeds.device) + offset
        return (F.cross_entropy(image_scores, labels) + F.cross_entropy(text_scores, labels)) / 2
    # targets over every process's candidates: this batch's pairings sit at columns offset .. offset + B
    match = match.to(image_scores.dtype)
    columns = match.T / match.T.sum(dim=1, keepdim=True).clamp_min(1e-12)
    image_targets = F.pad(match, (offset, all_texts.shape[0] - offset - batch))
    text_targets = F.pad(columns, (offset, all_images.shape[0] - offset - batch))
    return (cross_entropy_loss(image_scores, image_targets) + cross_entropy_loss(text_scores, text_targets)) / 2


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor, *, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy with hard labels (B,) or soft / mixed label distributions (B, C).

    Args:
        logits: (B, C).
        targets: (B,) class indices, or (B, C) probabilities (each row sums to 1, e.g. mixed labels).
        label_smoothing: Smoothing towards the uniform distribution.

    Returns:
        Scalar mean over the batch.
    """
    if logits.dim() != 2 or logits.shape[0] == 0:
        raise ValueError(
            f"logits must have shape (batch_size, num_classes) with batch_size > 0, got {tuple(logits.shape)}."
        )
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}.")
    soft = targets.dtype.is_floating_point
    expected = tuple(logits.shape) if soft else tuple(logits.shape[:1])
    if tuple(targets.shape) != expected:
        kind = "soft label distributions (batch_size, num_classes)" if soft else "class indices (batch_size,)"
        raise ValueError(
            f"targets must be {kind} = {expected} for logits {tuple(logits.shape)}, got {tuple(targets.shape)} "
            f"of dtype {targets.dtype} (integer targets are class indices, floating targets probabilities)."
        )
    if soft:
        if label_smoothing:
            targets = targets * (1 - label_smoothing) + label_smoothing / logits.shape[-1]
        return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
