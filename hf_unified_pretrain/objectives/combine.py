"""Combining named objective terms into the one scalar that is optimised."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def weighted_total(losses: Mapping[str, torch.Tensor], weights: Mapping[str, float] | None = None) -> torch.Tensor:
    """Weighted sum of named loss parts.

    Args:
        losses: `{name: scalar}`; at least one part.
        weights: `{name: weight}`; a missing name weighs 1. A weight for a name that is not a loss part is an error
            (a typo in a config would otherwise silently drop a term).

    Returns:
        Scalar `sum(weights[name] * loss)`.
    """
    if not losses:
        raise ValueError("weighted_total needs at least one loss part.")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(losses))
    if unknown:
        raise KeyError(f"Loss weights given for {unknown}, but the loss parts are {sorted(losses)}.")
    not_scalar = {name: tuple(value.shape) for name, value in losses.items() if value.dim() != 0}
    if not_scalar:
        raise ValueError(
            f"Loss parts must be scalars (reduce them first), got shapes {not_scalar}: summing them would broadcast."
        )
    return sum(weights.get(name, 1.0) * value for name, value in losses.items())
