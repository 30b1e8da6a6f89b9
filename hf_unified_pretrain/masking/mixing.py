"""Block-wise mixing of several images on the patch grid: which source image each patch comes from.

M3I (arXiv 2211.09807) feeds its encoder a "multi-input": one mixed image whose regions come from different images
(CutMix-style, block-wise on the patch grid), and asks every target (dense features of each source's other view,
the area-weighted category label, each source's caption) to be predicted from its own regions. So the mixing is
recorded as a per-patch source index (B, N) with N = H*W row-major, from which per-image area fractions and mixed
soft labels follow exactly. These are pure functions on indices; the pixel operation lives in `data/mixing.py`.
"""

from __future__ import annotations

import torch

from .generators import BEIT_MIN_ASPECT, _grid, block_mask


def block_mix_sources(
    batch_size: int,
    grid_size: tuple[int, int] | int,
    num_mixed: int,
    *,
    min_block_tokens: int = 4,
    min_aspect: float = BEIT_MIN_ASPECT,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Per-patch source index of a two-image block-wise mix: `num_mixed` patches (in blocks) from source 1.

    Args:
        batch_size: B.
        grid_size: (H, W) of the patch grid, or one int for a square grid.
        num_mixed: Patches taken from the second image, exact per sample, in [0, H*W].
        min_block_tokens: Smallest block area in patches.
        min_aspect: Smallest block aspect ratio (the largest is its inverse).
        generator: Optional generator for reproducibility.
        device: Device of the result.

    Returns:
        (B, H*W) long, 0 where the patch comes from the first image, 1 where it comes from the second.
    """
    blocks = block_mask(
        batch_size,
        grid_size,
        num_mixed,
        min_block_tokens=min_block_tokens,
        min_aspect=min_aspect,
        generator=generator,
        device=device,
    )
    return blocks.long()


def source_fractions(source_index: torch.Tensor, num_sources: int) -> torch.Tensor:
    """Area fraction of every source in each mixed image.

    Args:
        source_index: (B, N) long in [0, num_sources).
        num_sources: S.

    Returns:
        (B, S) float, rows sum to 1.
    """
    _check_source_index(source_index, num_sources)
    counts = torch.nn.functional.one_hot(source_index, num_sources).sum(dim=1)
    return counts.float() / source_index.shape[1]


def mix_soft_labels(
    source_labels: torch.Tensor, fractions: torch.Tensor, num_classes: int | None = None
) -> torch.Tensor:
    """Area-weighted label of each mixed image: sum over sources of fraction * that source's label distribution.

    Args:
        source_labels: (B, S) long class ids, or (B, S, K) float label distributions (e.g. a normalised multi-hot
            of an image's categories).
        fractions: (B, S) area fractions (`source_fractions`).
        num_classes: K; required with class ids.

    Returns:
        (B, K) float soft labels (rows sum to 1 when the sources' distributions do).
    """
    if source_labels.dim() == 2:
        if num_classes is None:
            raise ValueError("num_classes is required when source_labels are class ids (B, S).")
        if source_labels.min() < 0 or source_labels.max() >= num_classes:
            raise ValueError(f"class ids must be in [0, {num_classes}), got {source_labels.unique().tolist()}.")
        source_labels = torch.nn.functional.one_hot(source_labels, num_classes).float()
    if source_labels.dim() != 3 or source_labels.shape[:2] != fractions.shape:
        raise ValueError(
            f"source_labels must be (B, S) ids or (B, S, K) distributions matching fractions (B, S) = "
            f"{tuple(fractions.shape)}, got {tuple(source_labels.shape)}."
        )
    return (fractions.unsqueeze(-1).to(source_labels.dtype) * source_labels).sum(dim=1)


def source_index_to_pixels(
    source_index: torch.Tensor, grid_size: tuple[int, int] | int, patch_size: int | tuple[int, int]
) -> torch.Tensor:
    """Expands the per-patch source index to a per-pixel map (B, H * patch_h, W * patch_w)."""
    height, width = _grid(grid_size)
    patch_h, patch_w = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    if source_index.dim() != 2 or source_index.shape[1] != height * width:
        raise ValueError(
            f"source_index must be (B, {height * width}) for a {height}x{width} grid, got {tuple(source_index.shape)}."
        )
    grid = source_index.view(-1, height, width)
    return grid.repeat_interleave(patch_h, dim=1).repeat_interleave(patch_w, dim=2)


def _check_source_index(source_index: torch.Tensor, num_sources: int) -> None:
    if source_index.dim() != 2 or source_index.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"source_index must be an integer (B, N) tensor, got {source_index.dtype} {tuple(source_index.shape)}."
        )
    if source_index.numel() and (source_index.min() < 0 or source_index.max() >= num_sources):
        raise ValueError(f"source_index values must be in [0, {num_sources}), got {source_index.unique().tolist()}.")
