"""The eager attention function every architecture of the package registers as its fallback implementation."""

from __future__ import annotations

import torch
from torch import nn


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention with an additive bias (e.g. a relative position bias), in float32 softmax.

    Args:
        module: The attention module (its `training` flag gates dropout).
        query / key / value: (B, heads, T, d).
        attention_mask: Additive bias broadcastable to (B, heads, T, T), or None.
        scaling: Multiplier of the scores (usually d ** -0.5).
        dropout: Attention dropout probability (training only).

    Returns:
        (B, T, heads, d) outputs and the (B, heads, T, T) attention weights.
    """
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights
