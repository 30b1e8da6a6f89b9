"""Conversions between boolean masks and the index form used by token-dropping encoders (MAE's ids_keep/ids_restore)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class MaskIds(NamedTuple):
    """Index form of a mask with the same number of masked tokens in every row.

    Attributes:
        ids_keep: (B, K) indices of visible tokens, ascending.
        ids_masked: (B, M) indices of masked tokens, ascending.
        ids_restore: (B, N) inverse permutation of `cat([ids_keep, ids_masked], 1)`: gathering a sequence laid out as
            [visible tokens, masked tokens] with it restores the original token order.
    """

    ids_keep: torch.Tensor
    ids_masked: torch.Tensor
    ids_restore: torch.Tensor


def mask_to_ids(bool_masked_pos: torch.Tensor, require_visible: bool = False) -> MaskIds:
    """Splits a (B, N) bool mask into visible and masked index lists.

    Args:
        bool_masked_pos: (B, N) bool, True = masked; every row must mask the same number of tokens.
        require_visible: Raise when no token is visible (token-dropping encoders without extra tokens would get an
            empty sequence).

    Returns:
        `MaskIds(ids_keep (B, K), ids_masked (B, M), ids_restore (B, N))`.
    """
    counts = bool_masked_pos.sum(dim=1)
    if counts.numel() and not bool(torch.all(counts == counts[0])):
        raise ValueError(
            "Every sample must mask the same number of tokens to drop them from the encoder, got per-sample counts "
            f"{counts.tolist()}. Use masking.random_mask/block_mask, which produce exact counts."
        )
    num_visible = bool_masked_pos.shape[1] - (int(counts[0]) if counts.numel() else 0)
    if require_visible and num_visible == 0 and counts.numel():
        raise ValueError(
            f"bool_masked_pos masks all {bool_masked_pos.shape[1]} tokens, but the encoder drops masked tokens and "
            "would see nothing: keep at least one token visible (lower mask_ratio / num_masking_patches)."
        )
    ids_shuffle = torch.argsort(bool_masked_pos.to(torch.int8), dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    return MaskIds(ids_shuffle[:, :num_visible], ids_shuffle[:, num_visible:], ids_restore)


def ids_to_mask(ids_keep: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Builds the (B, N) bool mask (True = masked) whose visible tokens are `ids_keep` (B, K)."""
    mask = torch.ones(ids_keep.shape[0], num_tokens, dtype=torch.bool, device=ids_keep.device)
    return mask.scatter(1, ids_keep, False)


def gather_tokens(tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Selects tokens by index along dim 1.

    Args:
        tokens: (B, N, ...) tokens.
        ids: (B, K) indices into N.

    Returns:
        (B, K, ...) the selected tokens, in the order of `ids`.
    """
    index = ids.reshape(*ids.shape, *([1] * (tokens.dim() - 2))).expand(-1, -1, *tokens.shape[2:])
    return torch.gather(tokens, 1, index)
