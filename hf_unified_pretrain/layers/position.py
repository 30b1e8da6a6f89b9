"""Position information: fixed 2-D sin-cos embeddings, relative-position indices, and resizing of learned tables."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _grid(grid_size: tuple[int, int] | int) -> tuple[int, int]:
    return (grid_size, grid_size) if isinstance(grid_size, int) else (int(grid_size[0]), int(grid_size[1]))


def _sincos_1d(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.reshape(-1, 1).double() * omega.reshape(1, -1)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def get_2d_sincos_pos_embed(
    embed_dim: int, grid_size: tuple[int, int] | int, *, add_cls_token: bool = False, row_first: bool = False
) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding (computed in float64, returned as float32).

    Half of the channels encode the column and half the row. MAE and iTPN put the column first (`row_first=False`);
    MultiMAE/MoCo-v3 put the row first.

    Args:
        embed_dim: D, divisible by 4.
        grid_size: (H, W) of the token grid, or one int.
        add_cls_token: Prepend an all-zero row for a [CLS] token.
        row_first: Which coordinate the first half of the channels encodes.

    Returns:
        (H*W, D), or (1 + H*W, D) with `add_cls_token`, tokens in row-major order.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for a 2-D sin-cos embedding, got {embed_dim}.")
    height, width = _grid(grid_size)
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    first, second = (rows, cols) if row_first else (cols, rows)
    embed = torch.cat([_sincos_1d(embed_dim // 2, first), _sincos_1d(embed_dim // 2, second)], dim=1)
    if add_cls_token:
        embed = torch.cat([torch.zeros(1, embed_dim, dtype=embed.dtype), embed], dim=0)
    return embed.float()


def num_relative_distances(grid_size: tuple[int, int] | int, *, with_cls_token: bool) -> int:
    """Rows of a relative-position bias table: every 2-D offset, plus 3 entries for [CLS] pairs (BEiT)."""
    height, width = _grid(grid_size)
    return (2 * height - 1) * (2 * width - 1) + (3 if with_cls_token else 0)


def relative_position_index(grid_size: tuple[int, int] | int, *, with_cls_token: bool) -> torch.Tensor:
    """Index into a relative-position bias table for every (query, key) token pair.

    Args:
        grid_size: (H, W) of the patch grid.
        with_cls_token: BEiT layout: token 0 is [CLS], with separate table rows for cls→patch, patch→cls, cls→cls.

    Returns:
        (N, N) long with N = H*W (+1 with a [CLS] token).
    """
    height, width = _grid(grid_size)
    coords = torch.stack(torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")).flatten(1)
    offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    index = (offsets[..., 0] + height - 1) * (2 * width - 1) + (offsets[..., 1] + width - 1)
    if not with_cls_token:
        return index
    size = num_relative_distances(grid_size, with_cls_token=True)
    full = torch.zeros(height * width + 1, height * width + 1, dtype=index.dtype)
    full[1:, 1:] = index
    full[0, :] = size - 3
    full[:, 0] = size - 2
    full[0, 0] = size - 1
    return full


def interpolate_pos_embed(
    pos_embed: torch.Tensor,
    old_grid: tuple[int, int] | int,
    new_grid: tuple[int, int] | int,
    *,
    mode: str = "bicubic",
    num_prefix_tokens: int = 0,
) -> torch.Tensor:
    """Resizes a learned position embedding to another token grid.

    Args:
        pos_embed: (1, P + H*W, D) with P prefix tokens (e.g. [CLS]) that are kept as they are.
        old_grid: (H, W) of `pos_embed`.
        new_grid: Target (H', W').
        mode: Interpolation mode of `F.interpolate`.
        num_prefix_tokens: P.

    Returns:
        (1, P + H'*W', D).
    """
    old_h, old_w = _grid(old_grid)
    new_h, new_w = _grid(new_grid)
    if (old_h, old_w) == (new_h, new_w):
        return pos_embed
    prefix, grid_tokens = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = grid_tokens.shape[-1]
    grid_tokens = grid_tokens.reshape(1, old_h, old_w, dim).permute(0, 3, 1, 2)
    grid_tokens = F.interpolate(grid_tokens.float(), size=(new_h, new_w), mode=mode, align_corners=False)
    grid_tokens = grid_tokens.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, new_h * new_w, dim)
    return torch.cat([prefix, grid_tokens], dim=1)
