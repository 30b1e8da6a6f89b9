"""The original DCNv3 sampling algorithm, written naively (our code, the original's maths): the reference for
`hf_unified_pretrain.layers.dcnv3_core` in the tests and the "original algorithm" rows of the benchmarks.

InternImage's pure-PyTorch core (`dcnv3_core_pytorch` in OpenGVLab/InternImage ops_dcnv3/functions) zero-pads the
channels-last map, builds normalised sampling locations (reference point + kernel grid + offset, all scaled), calls
`F.grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)` once per (image, group) over the whole map
for all output positions and kernel points, then multiplies by the mask and sums the points. This module does the same
steps in the same order, so its numbers (rounding included) are the original's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def dcnv3_core_reference(
    value: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    group: int,
    kernel_size: int | tuple[int, int] = 3,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 1,
    dilation: int | tuple[int, int] = 1,
    offset_scale: float = 1.0,
    remove_center: bool = False,
) -> torch.Tensor:
    """Deformable sampling through `grid_sample`, as the original pure-PyTorch core.

    Args:
        value: (N, H, W, C) channels-last input (after the input projection).
        offset: (N, H_out, W_out, group * P * 2) offsets in pixels, (x, y) per point; points ordered x-major.
        mask: (N, H_out, W_out, group * P) modulation (softmax over the P points of a group in InternImage).
        group: Groups; C must be divisible by it.
        kernel_size, stride, padding, dilation: (h, w) or one int.
        offset_scale: Scale of the kernel grid and of the offsets.
        remove_center: Drop the kernel centre point (P = kh * kw - 1).

    Returns:
        (N, H_out, W_out, C).
    """
    kernel_h, kernel_w = _pair(kernel_size)
    stride_h, stride_w = _pair(stride)
    pad_h, pad_w = _pair(padding)
    dilation_h, dilation_w = _pair(dilation)
    # The original pads the W axis by pad_h and the H axis by pad_w; kept for identical numbers.
    value = F.pad(value, [0, 0, pad_h, pad_h, pad_w, pad_w])
    batch, height_in, width_in, channels = value.shape
    _, height_out, width_out, _ = offset.shape
    group_channels = channels // group
    device = value.device

    ref_y, ref_x = torch.meshgrid(
        torch.linspace(
            (dilation_h * (kernel_h - 1)) // 2 + 0.5,
            (dilation_h * (kernel_h - 1)) // 2 + 0.5 + (height_out - 1) * stride_h,
            height_out,
            dtype=torch.float32,
            device=device,
        ),
        torch.linspace(
            (dilation_w * (kernel_w - 1)) // 2 + 0.5,
            (dilation_w * (kernel_w - 1)) // 2 + 0.5 + (width_out - 1) * stride_w,
            width_out,
            dtype=torch.float32,
            device=device,
        ),
        indexing="ij",
    )
    ref = torch.stack((ref_x.reshape(-1)[None] / width_in, ref_y.reshape(-1)[None] / height_in), -1)
    ref = ref.reshape(1, height_out, width_out, 1, 2)

    grid_x, grid_y = torch.meshgrid(
        torch.linspace(
            -((dilation_w * (kernel_w - 1)) // 2),
            -((dilation_w * (kernel_w - 1)) // 2) + (kernel_w - 1) * dilation_w,
            kernel_w,
            dtype=torch.float32,
            device=device,
        ),
        torch.linspace(
            -((dilation_h * (kernel_h - 1)) // 2),
            -((dilation_h * (kernel_h - 1)) // 2) + (kernel_h - 1) * dilation_h,
            kernel_h,
            dtype=torch.float32,
            device=device,
        ),
        indexing="ij",
    )
    grid = torch.stack([grid_x / width_in, grid_y / height_in], -1).reshape(-1, 1, 2)
    grid = grid.repeat(1, group, 1).permute(1, 0, 2).reshape(1, 1, 1, group * kernel_h * kernel_w, 2)

    locations = (ref + grid * offset_scale).repeat(batch, 1, 1, 1, 1)
    if remove_center:
        center = (kernel_h * kernel_w - 1) // 2
        keep = [i for i in range(locations.shape[-2]) if i % (kernel_h * kernel_w) != center]
        locations = locations[:, :, :, keep, :]
    points = kernel_h * kernel_w - int(remove_center)
    spatial_norm = (
        torch.tensor([width_in, height_in], device=device).reshape(1, 1, 1, 2).repeat(1, 1, 1, group * points)
    )
    locations = locations.flatten(3, 4) + offset * offset_scale / spatial_norm
    grids = 2 * locations - 1

    value_ = value.view(batch, height_in * width_in, channels).transpose(1, 2)
    value_ = value_.reshape(batch * group, group_channels, height_in, width_in)
    grids_ = grids.view(batch, height_out * width_out, group, points, 2).transpose(1, 2).flatten(0, 1)
    sampled = F.grid_sample(value_, grids_, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask_ = mask.view(batch, height_out * width_out, group, points).transpose(1, 2)
    mask_ = mask_.reshape(batch * group, 1, height_out * width_out, points)
    output = (sampled * mask_).sum(-1).view(batch, channels, height_out * width_out)
    return output.transpose(1, 2).reshape(batch, height_out, width_out, channels).contiguous()
