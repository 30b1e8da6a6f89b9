"""Image mixing for M3I's multi-input: one input image whose patch-grid regions come from different images.

The per-patch bookkeeping (which source each patch comes from, area fractions, mixed soft labels) is in
`masking/mixing.py`; this module applies it to pixels and pairs every image of a batch with a partner.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..masking.mixing import source_index_to_pixels


def partner_indices(batch_size: int, shift: int = 1) -> torch.Tensor:
    """Index of each sample's partner image: the batch rolled by `shift` (never the sample itself when B > 1).

    Returns:
        (B,) long.
    """
    if batch_size < 2:
        raise ValueError(f"mixing two different images needs a batch of at least 2, got {batch_size}.")
    if shift % batch_size == 0:
        raise ValueError(f"shift {shift} pairs every image with itself in a batch of {batch_size}.")
    return (torch.arange(batch_size) + shift) % batch_size


def mix_images(sources: Sequence[torch.Tensor], source_index: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Builds mixed images: patch (i, j) of sample b is copied from `sources[source_index[b, i * W + j]][b]`.

    Args:
        sources: S tensors (B, C, H, W) of the same shape.
        source_index: (B, (H / patch_size) * (W / patch_size)) long in [0, S).
        patch_size: Side of a grid cell in pixels.

    Returns:
        (B, C, H, W).
    """
    if len(sources) == 0 or any(source.shape != sources[0].shape for source in sources):
        raise ValueError(f"sources must be one or more tensors of the same shape, got {[s.shape for s in sources]}.")
    batch, _, height, width = sources[0].shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"image size {(height, width)} is not a multiple of patch_size {patch_size}.")
    grid = (height // patch_size, width // patch_size)
    if source_index.shape != (batch, grid[0] * grid[1]):
        raise ValueError(f"source_index must be {(batch, grid[0] * grid[1])}, got {tuple(source_index.shape)}.")
    if source_index.min() < 0 or source_index.max() >= len(sources):
        raise ValueError(f"source_index values must be in [0, {len(sources)}).")
    pixel_source = source_index_to_pixels(source_index, grid, patch_size).unsqueeze(1)
    mixed = sources[0].clone()
    for index in range(1, len(sources)):
        mixed = torch.where(pixel_source == index, sources[index], mixed)
    return mixed
