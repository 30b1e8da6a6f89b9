"""Checks of model inputs shared by every patch-based architecture."""

from __future__ import annotations

import torch


def patch_grid_of(pixel_values: torch.Tensor, num_channels: int, patch_size: int) -> tuple[int, int]:
    """The (H/p, W/p) patch grid of a batch, after checking its rank, channel count and divisibility.

    Args:
        pixel_values: (B, C, H, W) images.
        num_channels: C the model was built for (`config.num_channels`).
        patch_size: p.

    Returns:
        (H / p, W / p). Raises a ValueError naming the problem and the fix otherwise.
    """
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"pixel_values must have shape (batch_size, num_channels, height, width), got {shape}.")
    _, channels, height, width = pixel_values.shape
    if channels != num_channels:
        raise ValueError(
            f"pixel_values has {channels} channels but the model expects {num_channels} (config.num_channels): "
            "convert the images (e.g. grayscale to RGB) or build the model with the right num_channels."
        )
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"Image size {height}x{width} is not divisible by the patch size {patch_size}: resize, crop or pad the "
            f"images to a multiple of {patch_size} (the image processor does this)."
        )
    return height // patch_size, width // patch_size
