"""Weighted k-nearest-neighbour classification on frozen features (InstDisc, Wu et al. 2018; DINO's `eval_knn`).

Features are L2-normalised; each query takes its `k` most cosine-similar bank entries, and neighbour `j` votes for
its label with weight `exp(sim_j / temperature)`. The class with the largest summed weight wins (ties: the lower
class index).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

DEFAULT_K = 20
DEFAULT_TEMPERATURE = 0.07


def _check(features: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    if features.ndim != 2:
        raise ValueError(f"{name} features must be (N, D), got {tuple(features.shape)}.")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(f"{name} labels must be (N,) with N = {features.shape[0]}, got {tuple(labels.shape)}.")


def knn_class_scores(
    bank_features: torch.Tensor,
    bank_labels: torch.Tensor,
    query_features: torch.Tensor,
    *,
    num_classes: int | None = None,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Summed vote weights per class.

    Args:
        bank_features: (N, D) labelled reference features.
        bank_labels: (N,) integer labels in [0, num_classes).
        query_features: (Q, D) features to classify.
        num_classes: Number of classes (default: largest bank label + 1).
        k: Neighbours per query (capped at N).
        temperature: Softness of the vote weights `exp(sim / temperature)`.
        chunk_size: Queries per similarity block (bounds memory at chunk_size x N).

    Returns:
        (Q, num_classes) scores.
    """
    _check(bank_features, bank_labels, "bank")
    if query_features.ndim != 2 or query_features.shape[1] != bank_features.shape[1]:
        raise ValueError(
            f"query features must be (Q, {bank_features.shape[1]}) like the bank, got {tuple(query_features.shape)}."
        )
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    bank_labels = bank_labels.long()
    num_classes = int(bank_labels.max()) + 1 if num_classes is None else num_classes
    bank = F.normalize(bank_features.float(), dim=1)
    k = min(k, bank.shape[0])
    scores = []
    for queries in query_features.float().split(chunk_size):
        similarity = F.normalize(queries, dim=1) @ bank.T
        top_similarity, top_index = similarity.topk(k, dim=1)
        weights = (top_similarity / temperature).exp()
        votes = torch.zeros(queries.shape[0], num_classes, dtype=weights.dtype, device=weights.device)
        scores.append(votes.scatter_add_(1, bank_labels[top_index], weights))
    return torch.cat(scores)


def knn_accuracy(
    bank_features: torch.Tensor,
    bank_labels: torch.Tensor,
    query_features: torch.Tensor,
    query_labels: torch.Tensor,
    *,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    topk: Sequence[int] = (1,),
    num_classes: int | None = None,
) -> dict[str, float]:
    """Weighted kNN accuracy of the queries against the bank.

    Args:
        bank_features / bank_labels: (N, D) / (N,) the labelled reference set (e.g. training images).
        query_features / query_labels: (Q, D) / (Q,) the evaluated set.
        k / temperature: See `knn_class_scores`.
        topk: Which top-k accuracies to report (a query counts when its label is among the k best classes).
        num_classes: Default: largest label of bank and queries + 1.

    Returns:
        `{"top1": ..., "top5": ...}` fractions in [0, 1].
    """
    _check(query_features, query_labels, "query")
    if num_classes is None:
        num_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    scores = knn_class_scores(
        bank_features, bank_labels, query_features, num_classes=num_classes, k=k, temperature=temperature
    )
    # A stable sort keeps the lower class index first among equal scores.
    ranked = scores.argsort(dim=1, descending=True, stable=True)
    hits = ranked == query_labels.long().to(ranked.device)[:, None]
    return {f"top{n}": hits[:, : min(n, num_classes)].any(dim=1).float().mean().item() for n in topk}
