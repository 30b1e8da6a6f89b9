"""DCNv3 deformable sampling core in pure PyTorch (no compiled extension; CPU and GPU).

InternImage's operator: for every output position and group, `P` kernel points are moved by learned offsets, the
channels-last input is sampled bilinearly at each moved point (zeros outside the map), and the samples are summed with
learned per-point weights (the "mask"). The original pure-PyTorch core runs `grid_sample` over the whole map per
(image, group) and reshapes around it; this one computes the sampling positions once and gathers instead:

* Each bilinear sample reads the 2x2 neighbourhood of its floor corner. The map is zero-padded by 2 and re-laid out so
  that one row holds a pixel's 2x2 neighbourhood for one group (4 x C/group values), so a sample is ONE row gather
  instead of four, and clamping the corner into the padded border reproduces `grid_sample`'s zeros padding exactly
  (a clamped corner only ever reads padding).
* The four bilinear weights are multiplied by the mask up front, so the weighted sum over points and corners is one
  small batched matmul per (position, group).
* A custom autograd function keeps only the indices and weights for backward (the gathered samples are gathered again
  there instead of being stored), which saves ~P x 4 copies of the input per layer in training.

Coordinates follow the original exactly: output position (i, j) samples kernel point (u, v) at
`x = j * stride_w + (dilation_w * (kernel_w - 1)) // 2 - pad + (kx_u + offset_x) * offset_scale` (and likewise y), in
unpadded pixel coordinates with pixel centres at integers (`align_corners=False`), kernel points ordered x-major.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Zero border around the map: a corner clamped to [-2, size] plus its +1 neighbour always lands in it.
_BORDER = 2


def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a pair (h, w), got {value!r}.")
    return int(value[0]), int(value[1])


def dcnv3_kernel_points(
    kernel_size: int | tuple[int, int] = 3,
    dilation: int | tuple[int, int] = 1,
    remove_center: bool = False,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel point displacements in pixels, in the original's order (x-major), without offsets or scaling.

    Returns:
        (kx, ky), each (P,) float32, P = kh * kw (- 1 without the centre).
    """
    kernel_h, kernel_w = _pair(kernel_size, "kernel_size")
    dilation_h, dilation_w = _pair(dilation, "dilation")
    xs = torch.arange(kernel_w, dtype=torch.float32, device=device) * dilation_w - (dilation_w * (kernel_w - 1)) // 2
    ys = torch.arange(kernel_h, dtype=torch.float32, device=device) * dilation_h - (dilation_h * (kernel_h - 1)) // 2
    kx = xs[:, None].expand(kernel_w, kernel_h).reshape(-1)
    ky = ys[None, :].expand(kernel_w, kernel_h).reshape(-1)
    if remove_center:
        if kernel_h != kernel_w or kernel_h % 2 == 0:
            raise ValueError("remove_center needs a square kernel of odd size.")
        keep = torch.arange(kernel_h * kernel_w, device=device) != (kernel_h * kernel_w - 1) // 2
        kx, ky = kx[keep], ky[keep]
    return kx, ky


def dcnv3_sampling_locations(
    offset: torch.Tensor,
    group: int,
    kernel_size: int | tuple[int, int] = 3,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 1,
    dilation: int | tuple[int, int] = 1,
    offset_scale: float = 1.0,
    remove_center: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates every kernel point samples, in the unpadded input (pixel centres at integers).

    Args:
        offset: (N, H_out, W_out, group * P * 2), (x, y) per point.

    Returns:
        (x, y), each (N, H_out, W_out, group, P) float32.
    """
    kernel_h, kernel_w = _pair(kernel_size, "kernel_size")
    stride_h, stride_w = _pair(stride, "stride")
    pad_h, pad_w = _pair(padding, "padding")
    dilation_h, dilation_w = _pair(dilation, "dilation")
    batch, height_out, width_out, _ = offset.shape
    kx, ky = dcnv3_kernel_points((kernel_h, kernel_w), (dilation_h, dilation_w), remove_center, offset.device)
    points = kx.numel()
    offset = offset.float().view(batch, height_out, width_out, group, points, 2)
    # The original pads the W axis by pad_h and the H axis by pad_w (only matters when they differ).
    base_x = torch.arange(width_out, device=offset.device, dtype=torch.float32) * stride_w
    base_x = base_x + ((dilation_w * (kernel_w - 1)) // 2 - pad_h)
    base_y = torch.arange(height_out, device=offset.device, dtype=torch.float32) * stride_h
    base_y = base_y + ((dilation_h * (kernel_h - 1)) // 2 - pad_w)
    x = base_x[None, None, :, None, None] + (kx + offset[..., 0]) * offset_scale
    y = base_y[None, :, None, None, None] + (ky + offset[..., 1]) * offset_scale
    return x, y


def _padded_table(value: torch.Tensor, group: int) -> torch.Tensor:
    """(N, H, W, C) → (N * (H + 4) * (W + 4) * group, C / group): one row per padded pixel and group."""
    padded = F.pad(value, (0, 0, _BORDER, _BORDER, _BORDER, _BORDER))
    return padded.reshape(-1, value.shape[-1] // group)


def _kernel_grid(
    height_out: int,
    width_out: int,
    kernel_size: tuple[int, int],
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    dilation: int | tuple[int, int],
    offset_scale: float,
    remove_center: bool,
    device: torch.device,
) -> torch.Tensor:
    """(1, H_out, W_out, 1, P, 2) sampling positions (x, y) for zero offsets: what `dcnv3_sampling_locations` adds
    the scaled offsets to."""
    zeros = torch.zeros(1, height_out, width_out, 2 * (kernel_size[0] * kernel_size[1] - int(remove_center)))
    x, y = dcnv3_sampling_locations(
        zeros.to(device), 1, kernel_size, stride, padding, dilation, offset_scale, remove_center
    )
    return torch.stack((x, y), dim=-1)


def _sampling_plan(
    value_shape: torch.Size,
    offset: torch.Tensor,
    mask: torch.Tensor,
    group: int,
    kernel_size: tuple[int, int],
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    dilation: int | tuple[int, int],
    offset_scale: float,
    remove_center: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Everything the gather needs, in few passes over the (N, H_out, W_out, G, P) samples.

    Returns:
        locations: (N, H_out, W_out, G, P, 2) float32 pixel coordinates (x, y);
        mask: (N, H_out, W_out, G, P) float32;
        indices: (N*H_out*W_out*G, P*4) rows of the four corners (00, 01, 10, 11) in the padded table;
        weights: (N*H_out*W_out*G, P*4) float32 bilinear weights times the mask.
    """
    batch, height, width, _ = value_shape
    _, height_out, width_out, _ = offset.shape
    points = kernel_size[0] * kernel_size[1] - int(remove_center)
    grid = _kernel_grid(
        height_out, width_out, kernel_size, stride, padding, dilation, offset_scale, remove_center, offset.device
    )
    offset = offset.view(batch, height_out, width_out, group, points, 2)
    locations = torch.add(grid, offset.float(), alpha=offset_scale)
    corner = torch.floor(locations)
    fraction = locations - corner
    rows, cols = height + 2 * _BORDER, width + 2 * _BORDER
    # A corner clamped to [-2, size] and its +1 neighbour both land in the zero border: out-of-map samples read zeros
    # with their exact bilinear weights, which is grid_sample's padding_mode="zeros".
    low = torch.tensor([-_BORDER, -_BORDER], dtype=torch.float32, device=offset.device)
    high = torch.tensor([width, height], dtype=torch.float32, device=offset.device)
    corner = torch.clamp_(corner, low, high)
    # Row of the top-left corner: ((n * rows + y + B) * cols + x + B) * G + g. Exact in float32 below 2**24 rows.
    exact_in_float = batch * rows * cols * group < 2**24
    index_dtype = torch.float32 if exact_in_float else torch.float64
    strides = torch.tensor([group, cols * group], dtype=index_dtype, device=offset.device)
    image = torch.arange(batch, dtype=index_dtype, device=offset.device).view(batch, 1, 1, 1, 1) * (
        rows * cols * group
    )
    base = image + torch.arange(group, dtype=index_dtype, device=offset.device).view(1, 1, 1, group, 1)
    base = base + (_BORDER * cols + _BORDER) * group
    top_left = torch.matmul(corner.to(index_dtype), strides).add_(base)
    top_left = top_left.to(torch.int32 if exact_in_float else torch.int64)
    steps = torch.tensor([0, group, cols * group, (cols + 1) * group], dtype=top_left.dtype, device=offset.device)
    indices = (top_left.unsqueeze(-1) + steps).view(-1, points * 4)
    mask = mask.float().view(batch, height_out, width_out, group, points)
    # (1 - f, f) per axis; corner (cy, cx) weight = wy[cy] * wx[cx] * mask
    pair = torch.stack((1.0 - fraction, fraction), dim=-2)  # (..., P, 2: low/high, 2: x/y)
    weight_y = pair[..., 1] * mask.unsqueeze(-1)
    weights = (weight_y.unsqueeze(-1) * pair[..., 0].unsqueeze(-2)).view(-1, points * 4)
    return locations, mask, indices, weights


class _DCNv3Function(torch.autograd.Function):
    """Deformable sampling: fused gather forward, fused-kernel backward.

    Forward is one `embedding_bag` call (gather + weighted sum in one kernel, nothing materialised per sample) over the
    zero-padded channels-last map: 4 corners x P points per (position, group), mask folded into the bilinear weights.
    Backward uses grid_sample's fused backward kernel (one scatter per (image, group) plane, parallel over planes) for
    the value and offset gradients, with the mask folded into its incoming gradient; the mask gradient is
    <sample, grad>. Only the value, the sampling coordinates and the mask are kept for backward.
    """

    @staticmethod
    def forward(ctx, value, offset, mask, group, kernel_size, stride, padding, dilation, offset_scale, remove_center):
        batch, height_out, width_out, _ = offset.shape
        locations, mask32, indices, weights = _sampling_plan(
            value.shape, offset, mask, group, kernel_size, stride, padding, dilation, offset_scale, remove_center
        )
        table = _padded_table(value, group)
        offsets = torch.arange(0, indices.numel(), indices.shape[1], dtype=indices.dtype, device=indices.device)
        output = F.embedding_bag(
            indices.view(-1), table, offsets, per_sample_weights=weights.view(-1).to(table.dtype), mode="sum"
        )
        ctx.save_for_backward(value, locations, mask32)
        ctx.config = (group, offset_scale, offset.dtype, mask.dtype)
        return output.view(batch, height_out, width_out, value.shape[-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        value, locations, mask = ctx.saved_tensors
        group, offset_scale, offset_dtype, mask_dtype = ctx.config
        batch, height, width, channels = value.shape
        _, height_out, width_out, _, points, _ = locations.shape
        group_channels = channels // group
        positions = height_out * width_out
        planes = value.view(batch, height * width, group, group_channels).permute(0, 2, 3, 1)
        planes = planes.reshape(batch * group, group_channels, height, width)
        # grid_sample's normalised coordinates (align_corners=False): pixel x ↔ (2x + 1) / W - 1.
        size = torch.tensor([width, height], dtype=torch.float32, device=value.device)
        grid = (2.0 * locations + 1.0) / size - 1.0
        grid = (
            grid.view(batch, positions, group, points, 2).transpose(1, 2).reshape(batch * group, positions, points, 2)
        )
        grad = grad_output.reshape(batch, positions, group, group_channels).permute(0, 2, 3, 1).to(planes.dtype)
        grad = grad.reshape(batch * group, group_channels, positions)
        mask_planes = (
            mask.view(batch, positions, group, points).transpose(1, 2).reshape(batch * group, 1, positions, points)
        )
        grad_value = grad_offset = grad_mask = None
        needs_value, needs_offset, needs_mask = ctx.needs_input_grad[:3]
        if needs_value or needs_offset:
            point_grad = grad.unsqueeze(-1) * mask_planes.to(grad.dtype)
            grad_planes, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
                point_grad, planes, grid.to(planes.dtype), 0, 0, False, [needs_value, needs_offset]
            )
            if needs_value:
                grad_value = grad_planes.view(batch, group, group_channels, height * width).permute(0, 3, 1, 2)
                grad_value = grad_value.reshape(value.shape)
            if needs_offset:
                # d grid / d pixel = 2 / size, d pixel / d offset = offset_scale.
                scale = torch.tensor([2.0 * offset_scale / width, 2.0 * offset_scale / height], device=value.device)
                grad_offset = grad_grid.float().view(batch, group, height_out, width_out, points, 2) * scale
                grad_offset = grad_offset.permute(0, 2, 3, 1, 4, 5).reshape(batch, height_out, width_out, -1)
                grad_offset = grad_offset.to(offset_dtype)
        if needs_mask:
            samples = F.grid_sample(
                planes, grid.to(planes.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
            )
            # (planes, C/g, Q, P) x (planes, C/g, Q) → (planes, Q, P)
            grad_mask = torch.einsum("bcqp,bcq->bqp", samples.float(), grad.float())
            grad_mask = grad_mask.view(batch, group, height_out, width_out, points).permute(0, 2, 3, 1, 4)
            grad_mask = grad_mask.reshape(batch, height_out, width_out, -1).to(mask_dtype)
        return grad_value, grad_offset, grad_mask, None, None, None, None, None, None, None


def dcnv3_core(
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
    """DCNv3 deformable sampling, numerically the original pure-PyTorch core (bilinear, zeros outside the map).

    Args:
        value: (N, H, W, C) channels-last input (after the input projection).
        offset: (N, H_out, W_out, group * P * 2) offsets in pixels, (x, y) per point, points x-major
            (P = kh * kw, minus 1 with `remove_center`).
        mask: (N, H_out, W_out, group * P) per-point weights (softmax over a group's points in InternImage).
        group: Number of groups; C must be divisible by it.
        kernel_size, stride, padding, dilation: One int or (h, w).
        offset_scale: Scale of the kernel grid and of the offsets.
        remove_center: Leave out the kernel centre (square odd kernels only).

    Returns:
        (N, H_out, W_out, C) in `value`'s dtype. Coordinates and weights are computed in float32 whatever the input
        dtype (bf16 offsets would misplace samples by up to a quarter pixel on a 64-wide map).
    """
    if value.dim() != 4 or offset.dim() != 4 or mask.dim() != 4:
        raise ValueError(
            "dcnv3_core expects channels-last 4-D tensors: value (N, H, W, C), offset (N, H_out, W_out, G*P*2), "
            f"mask (N, H_out, W_out, G*P); got {tuple(value.shape)}, {tuple(offset.shape)}, {tuple(mask.shape)}."
        )
    batch, _, _, channels = value.shape
    if channels % group != 0:
        raise ValueError(f"DCNv3: channels ({channels}) must be divisible by group ({group}); change one of them.")
    kernel_h, kernel_w = _pair(kernel_size, "kernel_size")
    points = kernel_h * kernel_w - int(bool(remove_center))
    _, height_out, width_out, offset_channels = offset.shape
    if offset_channels != group * points * 2 or mask.shape[-1] != group * points:
        raise ValueError(
            f"DCNv3: with group={group} and {points} kernel points, offset needs {group * points * 2} channels and "
            f"mask {group * points}; got {offset_channels} and {mask.shape[-1]}."
        )
    if offset.shape[0] != batch or tuple(mask.shape[:3]) != (batch, height_out, width_out):
        raise ValueError(
            f"DCNv3: offset {tuple(offset.shape)} and mask {tuple(mask.shape)} must share (N, H_out, W_out)."
        )
    # Explicit dtypes inside: coordinates/weights in float32, samples in value's dtype (bf16 under autocast).
    with torch.autocast(device_type=value.device.type, enabled=False):
        return _DCNv3Function.apply(
            value, offset, mask, group, (kernel_h, kernel_w), stride, padding, dilation, offset_scale, remove_center
        )


__all__ = ["dcnv3_core", "dcnv3_kernel_points", "dcnv3_sampling_locations"]
