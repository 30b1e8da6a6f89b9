"""DCNv3 deformable sampling core in pure PyTorch (no compiled extension; CPU and GPU).

InternImage's operator: for every output position and group, `P` kernel points are moved by learned offsets, the
channels-last input is sampled bilinearly at each moved point (zeros outside the map), and the samples are summed with
learned per-point weights (the "mask"). The original pure-PyTorch core runs `grid_sample` over the whole map per
(image, group) and reshapes around it; this one builds a sampling plan once and gathers instead:

* Plan (`_sampling_plan`): the top-left corner row of every sample in a zero-padded (by 2) channels-last table whose
  rows are (pixel, group) slices of C/group channels, and the four bilinear weights times the mask. Clamping the
  corner into the padded border reproduces `grid_sample`'s zeros padding exactly (a clamped corner only ever reads
  padding). Every pass runs over long contiguous runs; broadcasts whose innermost dimension is a kernel point or an
  (x, y) pair fall off PyTorch's vectorised loops and made an earlier plan cost ~10x the gather.
* Forward (`_gather`): one `embedding_bag` per corner (gather and weighted sum in one kernel, one bag of P rows per
  (position, group)), on the table shifted by the corner's row step, so the four calls share one index tensor.
* Backward, on the same plan: the value gradient is the exact transpose of the gather, a sparse (table rows x bags)
  CSR matrix built by sorting the top-left rows once, times the output gradient, per corner (`_scatter_to_table`);
  the mask and offset gradients come from the four <output gradient, corner row> dot products per sample, a sampled
  dense-dense product (`_corner_dots`), through the bilinear formula. Nothing of size (samples, C/group) is ever
  materialised. Devices without sparse CSR kernels take a materialising `index_add_` fallback.
* Forward and backward are `torch.library` custom ops joined by a registered autograd formula (the forward returns
  the plan, which the backward takes; the padded table is rebuilt from the saved input). `torch.compile` treats them
  as two opaque calls with fake shapes and compiles the rest of a model around them without a graph break.

Coordinates follow the original exactly: output position (i, j) samples kernel point (u, v) at
`x = j * stride_w + (dilation_w * (kernel_w - 1)) // 2 - pad + (kx_u + offset_x) * offset_scale` (and likewise y), in
unpadded pixel coordinates with pixel centres at integers (`align_corners=False`), kernel points ordered x-major.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

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
    group: int,
    kernel_size: tuple[int, int],
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    dilation: int | tuple[int, int],
    offset_scale: float,
    remove_center: bool,
    device: torch.device,
) -> torch.Tensor:
    """(1, H_out, W_out, 1, P, 2) sampling positions (x, y) for zero offsets, what the scaled offsets are added to
    (broadcast over the groups: its innermost run of P * 2 values stays contiguous)."""
    points = kernel_size[0] * kernel_size[1] - int(remove_center)
    zeros = torch.zeros(1, height_out, width_out, 2 * points, device=device)
    x, y = dcnv3_sampling_locations(zeros, 1, kernel_size, stride, padding, dilation, offset_scale, remove_center)
    return torch.stack((x, y), dim=-1)


class _SamplingPlan(NamedTuple):
    """Where and how much every (position, group, point) sample reads, shared by forward and backward.

    `top_left` (N*H_out*W_out*G, P) rows of the sample's top-left corner in the padded table (int32, or int64 for
    tables of 2**31 rows and more); the other three corners are the rows `corner_steps` further. `weights` holds the
    four corners' bilinear weights times the mask, (4, N*H_out*W_out*G, P) float32, corners ordered (y, x) =
    (0, 0), (0, 1), (1, 0), (1, 1). `fraction` (..., P, 2) and `mask` (..., P) are kept for the offset and mask
    gradients."""

    top_left: torch.Tensor
    weights: torch.Tensor
    fraction: torch.Tensor
    mask: torch.Tensor
    corner_steps: tuple[int, int, int, int]
    table_rows: int


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
) -> _SamplingPlan:
    """Corner rows and bilinear weights of every sample, in about a dozen passes over (N, H_out, W_out, G, P).

    Every elementwise op here runs over long contiguous (or stride-2) runs: ops whose innermost dimension is a kernel
    point or an (x, y) pair broadcast against another shape fall off PyTorch's vectorised loops and were what made the
    previous plan cost ~10x the gather itself."""
    batch, height, width, _ = value_shape
    _, height_out, width_out, _ = offset.shape
    points = kernel_size[0] * kernel_size[1] - int(remove_center)
    rows, cols = height + 2 * _BORDER, width + 2 * _BORDER
    table_rows = batch * rows * cols * group
    device = offset.device
    grid = _kernel_grid(
        height_out, width_out, group, kernel_size, stride, padding, dilation, offset_scale, remove_center, device
    )
    # unflatten, not view: the offsets may be a column slice of a fused projection
    offset = offset.unflatten(-1, (group, points, 2))
    fraction = torch.add(grid, offset.float(), alpha=offset_scale)
    corner = torch.floor(fraction)
    fraction.sub_(corner)
    # A corner clamped to [-2, size] and its +1 neighbour both land in the zero border: out-of-map samples read zeros
    # with their exact bilinear weights, which is grid_sample's padding_mode="zeros".
    corner_x, corner_y = corner[..., 0], corner[..., 1]
    corner_x.clamp_(-_BORDER, width)
    corner_y.clamp_(-_BORDER, height)
    # Row of the top-left corner: ((n * rows + y + 2) * cols + x + 2) * G + g, exact in float32 below 2**24 rows
    # (then computed in the corner buffer itself: every fresh buffer costs page faults, here as much as a pass).
    if table_rows < 2**24:
        top_left = corner_y.mul_(cols * group)
    else:
        top_left = corner_y.to(torch.float64).mul_(cols * group)
    top_left.add_(corner_x, alpha=group)
    image_base = torch.arange(batch, dtype=top_left.dtype, device=device) * (rows * cols * group)
    group_base = torch.arange(group, dtype=top_left.dtype, device=device) + (_BORDER * cols + _BORDER) * group
    base = (image_base.view(batch, 1, 1) + group_base.view(1, group, 1)).expand(batch, group, points)
    top_left.view(batch, height_out * width_out, group * points).add_(base.reshape(batch, 1, group * points))
    top_left = top_left.to(torch.int32 if table_rows < 2**31 else torch.int64).view(-1, points)
    # NaN offsets become arbitrary integers: keep every row in the table (the sparse kernels do not check bounds)
    top_left.clamp_(0, table_rows - 1 - (cols + 1) * group)
    mask = mask.float().reshape(fraction.shape[:-1])
    fraction_x, fraction_y = fraction[..., 0], fraction[..., 1]
    weights = torch.empty(4, *mask.shape, device=device)
    torch.mul(fraction_y, mask, out=weights[2])  # fy m
    torch.sub(mask, weights[2], out=weights[0])  # (1 - fy) m
    torch.mul(weights[0], fraction_x, out=weights[1])  # (1 - fy) m fx
    weights[0].sub_(weights[1])  # (1 - fy) m (1 - fx)
    torch.mul(weights[2], fraction_x, out=weights[3])
    weights[2].sub_(weights[3])
    weights = weights.view(4, *top_left.shape)
    mask = mask.view(top_left.shape)
    steps = (0, group, cols * group, (cols + 1) * group)
    return _SamplingPlan(top_left, weights, fraction, mask, steps, table_rows)


def _gather(table: torch.Tensor, plan: _SamplingPlan) -> torch.Tensor:
    """Σ over corners and points of weight x table row: four `embedding_bag` calls (gather and weighted sum in one
    kernel, one bag of P rows per (position, group)), one per corner, each on the table shifted by its corner's row
    step so all four share the top-left indices. (N*H_out*W_out*G, C/G) in the table's dtype."""
    top_left = plan.top_left
    bag_starts = torch.arange(0, top_left.numel(), top_left.shape[1], dtype=top_left.dtype, device=top_left.device)
    indices = top_left.view(-1)
    output = None
    for step, weights in zip(plan.corner_steps, plan.weights):
        part = F.embedding_bag(
            indices, table[step:], bag_starts, per_sample_weights=weights.view(-1).to(table.dtype), mode="sum"
        )
        output = part if output is None else output.add_(part)
    return output


def _sparse_backward_supported(device: torch.device) -> bool:
    return device.type in ("cpu", "cuda")


def _csr(row_starts: torch.Tensor, columns: torch.Tensor, values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A CSR matrix over existing index tensors (built here, valid by construction: the checks would cost a pass)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return torch.sparse_csr_tensor(row_starts, columns, values, size=size, check_invariants=False)


def _corner_dots(table: torch.Tensor, grad: torch.Tensor, plan: _SamplingPlan) -> list[torch.Tensor]:
    """<grad of the sample's bag, table row> for every sample and corner: four (N*H_out*W_out*G, P) float32.

    A sampled dense-dense product (`sampled_addmm` on the sparsity pattern of the top-left rows, the table shifted per
    corner), so no (samples, C/G) tensor is materialised."""
    top_left = plan.top_left
    bags, points = top_left.shape
    if not _sparse_backward_supported(grad.device):
        return [torch.sum(table[top_left + step] * grad.unsqueeze(1), dim=-1) for step in plan.corner_steps]
    bag_starts = torch.arange(0, top_left.numel() + 1, points, dtype=top_left.dtype, device=top_left.device)
    dots = []
    for corner, step in enumerate(plan.corner_steps):
        shifted = table[step:]
        # the values only carry the pattern (beta=0); finite ones, as 0 * NaN would not vanish
        pattern = _csr(bag_starts, top_left.view(-1), plan.weights[corner].view(-1), (bags, shifted.shape[0]))
        dots.append(torch.sparse.sampled_addmm(pattern, grad, shifted.t(), beta=0.0).values().view(bags, points))
    return dots


def _scatter_to_table(grad: torch.Tensor, plan: _SamplingPlan) -> torch.Tensor:
    """Transpose of `_gather`: every bag's gradient times each sample's corner weight, summed into the table rows it
    read. (table_rows, C/G) float32.

    The top-left rows are sorted once to build the transposed sampling matrix (table rows x bags) in CSR form; one
    sparse x dense product per corner then does the scatter with the same pattern (the other corners are the same
    rows shifted)."""
    top_left = plan.top_left
    bags, points = top_left.shape
    table_rows = plan.table_rows
    channels = grad.shape[1]
    grad_table = torch.zeros(table_rows, channels, device=grad.device)
    if not _sparse_backward_supported(grad.device):
        sources = top_left.view(-1).long()
        for step, weights in zip(plan.corner_steps, plan.weights):
            contribution = (weights.unsqueeze(-1) * grad.unsqueeze(1)).view(-1, channels)
            grad_table.index_add_(0, sources + step, contribution)
        return grad_table
    sorted_rows, order = torch.sort(top_left.view(-1), stable=True)
    counts = torch.bincount(sorted_rows, minlength=table_rows)
    row_starts = torch.zeros(table_rows + 1, dtype=top_left.dtype, device=grad.device)
    torch.cumsum(counts, 0, out=row_starts[1:])
    bag_of_sample = torch.div(order, points, rounding_mode="floor").to(top_left.dtype)
    sorted_weights = plan.weights.view(4, -1).index_select(1, order)
    for step, weights in zip(plan.corner_steps, sorted_weights):
        # The corner `step` rows below the top-left one: the same matrix with its rows moved down by `step`.
        shifted_starts = row_starts if step == 0 else torch.cat((row_starts.new_zeros(step), row_starts[:-step]))
        transposed = _csr(shifted_starts, bag_of_sample, weights, (table_rows, bags))
        grad_table.addmm_(transposed, grad)
    return grad_table


def _table_geometry(value_shape: torch.Size | tuple[int, ...], group: int) -> tuple[tuple[int, int, int, int], int]:
    """Row steps of the four corners after the top-left one, and the row count of the padded table."""
    batch, height, width, _ = value_shape
    cols = width + 2 * _BORDER
    return (0, group, cols * group, (cols + 1) * group), batch * (height + 2 * _BORDER) * cols * group


# The core is two custom operators (forward, backward) joined by a registered autograd formula: eagerly that is what an
# autograd.Function would be, and `torch.compile` sees two opaque calls with known output shapes, so it compiles the
# model around them (norms, activations, permutes, projections) with no graph break. Inductor's own version of the
# gather (indexed loads + sum, backward derived by AOTAutograd) measured slower than these kernels.
@torch.library.custom_op("hf_unified_pretrain::dcnv3_forward", mutates_args=())
def _dcnv3_forward(
    value: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    group: int,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    offset_scale: float,
    remove_center: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Output (N, H_out, W_out, C) and the plan the backward needs: top-left rows, corner weights, fractions."""
    batch, height_out, width_out, _ = offset.shape
    plan = _sampling_plan(
        value.shape, offset, mask, group, tuple(kernel_size), stride, padding, dilation, offset_scale, remove_center
    )
    output = _gather(_padded_table(value, group), plan)
    return output.view(batch, height_out, width_out, value.shape[-1]), plan.top_left, plan.weights, plan.fraction


@_dcnv3_forward.register_fake
def _dcnv3_forward_fake(
    value, offset, mask, group, kernel_size, stride, padding, dilation, offset_scale, remove_center
):
    batch, height_out, width_out, _ = offset.shape
    points = kernel_size[0] * kernel_size[1] - int(remove_center)
    bags = batch * height_out * width_out * group
    _, table_rows = _table_geometry(value.shape, group)
    index_dtype = torch.int32 if table_rows < 2**31 else torch.int64
    return (
        value.new_empty(batch, height_out, width_out, value.shape[-1]),
        offset.new_empty(bags, points, dtype=index_dtype),
        offset.new_empty(4, bags, points, dtype=torch.float32),
        offset.new_empty(batch, height_out, width_out, group, points, 2, dtype=torch.float32),
    )


@torch.library.custom_op("hf_unified_pretrain::dcnv3_backward", mutates_args=())
def _dcnv3_backward(
    grad_output: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor,
    top_left: torch.Tensor,
    weights: torch.Tensor,
    fraction: torch.Tensor,
    group: int,
    offset_scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of value (its dtype), offset and mask (float32), all from the forward's plan.

    The value gradient is the transposed gather (`_scatter_to_table`); the mask and offset gradients come from the
    four corner dot products <grad, corner row> per sample (`_corner_dots`) through the bilinear formula, so no
    sample tensor of size (samples, C/G) is ever built."""
    batch, height, width, channels = value.shape
    steps, table_rows = _table_geometry(value.shape, group)
    sample_shape = fraction.shape[:-1]
    plan = _SamplingPlan(top_left, weights, fraction, mask.float().reshape(top_left.shape), steps, table_rows)
    grad = grad_output.reshape(-1, channels // group).float()
    table = _padded_table(value, group)
    grad_table = _scatter_to_table(grad, plan)
    rows, cols = height + 2 * _BORDER, width + 2 * _BORDER
    # One copy out of the padded table (`.to(memory_format=...)` would return the strided view itself).
    grad_value = torch.empty(value.shape, dtype=value.dtype, device=value.device)
    grad_value.copy_(grad_table.view(batch, rows, cols, channels)[:, _BORDER:-_BORDER, _BORDER:-_BORDER])
    dots = [dot.view(sample_shape) for dot in _corner_dots(table.float(), grad, plan)]
    fraction_x, fraction_y = fraction[..., 0], fraction[..., 1]
    # d/dfx of the bilinear sum: (1 - fy) (d01 - d00) + fy (d11 - d10); the y rows likewise.
    # In place on the four dot buffers (fresh buffers cost page faults):
    along_x_low = dots[1].sub_(dots[0])  # d01 - d00
    along_x_high = dots[3].sub_(dots[2])  # d11 - d10
    low = dots[0].addcmul_(fraction_x, along_x_low)  # the sample's dot along the y = 0 row
    along_y = dots[2].addcmul_(fraction_x, along_x_high).sub_(low)  # y = 1 row minus y = 0 row
    along_x = along_x_low.addcmul_(fraction_y, along_x_high.sub_(along_x_low))
    grad_mask = low.addcmul_(fraction_y, along_y).view(*sample_shape[:3], -1)
    mask = plan.mask.view(sample_shape)
    grad_offset = torch.empty(fraction.shape, device=grad.device)
    torch.mul(along_x, mask, out=grad_offset[..., 0])
    torch.mul(along_y, mask, out=grad_offset[..., 1])
    if offset_scale != 1.0:
        grad_offset.mul_(offset_scale)
    return grad_value, grad_offset.view(*sample_shape[:3], -1), grad_mask


@_dcnv3_backward.register_fake
def _dcnv3_backward_fake(grad_output, value, mask, top_left, weights, fraction, group, offset_scale):
    sample_shape = fraction.shape[:-1]
    return (
        torch.empty_like(value, memory_format=torch.contiguous_format),
        fraction.new_empty(*sample_shape[:3], sample_shape[3] * sample_shape[4] * 2),
        fraction.new_empty(*sample_shape[:3], sample_shape[3] * sample_shape[4]),
    )


def _dcnv3_setup_context(ctx, inputs, output) -> None:
    value, offset, mask, group, _, _, _, _, offset_scale, _ = inputs
    _, top_left, weights, fraction = output
    ctx.mark_non_differentiable(top_left, weights, fraction)
    ctx.save_for_backward(value, mask, top_left, weights, fraction)
    ctx.config = (group, offset_scale, offset.dtype, mask.dtype)


def _dcnv3_autograd_backward(ctx, grad_output, *_plan_grads):
    value, mask, top_left, weights, fraction = ctx.saved_tensors
    group, offset_scale, offset_dtype, mask_dtype = ctx.config
    grad_value, grad_offset, grad_mask = _dcnv3_backward(
        grad_output, value, mask, top_left, weights, fraction, group, offset_scale
    )
    return grad_value, grad_offset.to(offset_dtype), grad_mask.to(mask_dtype), None, None, None, None, None, None, None


_dcnv3_forward.register_autograd(_dcnv3_autograd_backward, setup_context=_dcnv3_setup_context)


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
        output, *_ = _dcnv3_forward(
            value,
            offset,
            mask,
            group,
            [kernel_h, kernel_w],
            list(_pair(stride, "stride")),
            list(_pair(padding, "padding")),
            list(_pair(dilation, "dilation")),
            float(offset_scale),
            bool(remove_center),
        )
        return output


__all__ = ["dcnv3_core", "dcnv3_kernel_points", "dcnv3_sampling_locations"]
