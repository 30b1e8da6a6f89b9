"""The DCNv3 core (`hf_unified_pretrain.layers.dcnv3_core`) against the original algorithm written naively
(benchmarks/dcnv3_reference.py: grid_sample over the whole map per image and group): forward and every gradient, at
several group counts, kernel sizes, strides/dilations and non-square maps, with offsets that leave the map."""

from __future__ import annotations

import pytest
import torch

from benchmarks.dcnv3_reference import dcnv3_core_reference
from hf_unified_pretrain.layers.dcnv3 import dcnv3_core, dcnv3_kernel_points, dcnv3_sampling_locations

TOLERANCE = dict(atol=1e-5, rtol=1e-4)


def _inputs(batch, height, width, channels, group, points, offset_std, out_hw=None, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    height_out, width_out = out_hw or (height, width)
    value = torch.randn(batch, height, width, channels, generator=generator, dtype=dtype)
    offset = torch.randn(batch, height_out, width_out, group * points * 2, generator=generator) * offset_std
    logits = torch.randn(batch, height_out, width_out, group, points, generator=generator)
    mask = logits.softmax(-1).reshape(batch, height_out, width_out, group * points)
    return [t.to(dtype).requires_grad_() for t in (value, offset, mask)]


def _compare(value, offset, mask, check_offset_grad=True, **kwargs):
    expected = dcnv3_core_reference(value, offset, mask, **kwargs)
    actual = dcnv3_core(value, offset, mask, **kwargs)
    torch.testing.assert_close(actual, expected, **TOLERANCE)
    grad = torch.randn(expected.shape, generator=torch.Generator().manual_seed(5))
    expected_grads = torch.autograd.grad(expected, (value, offset, mask), grad)
    actual_grads = torch.autograd.grad(actual, (value, offset, mask), grad)
    for name, a, e in zip(("value", "offset", "mask"), actual_grads, expected_grads):
        if name == "offset" and not check_offset_grad:
            continue
        torch.testing.assert_close(a, e, **TOLERANCE, msg=lambda m, n=name: f"grad of {n}: {m}")
    return expected


@pytest.mark.parametrize(
    ("height", "width", "channels", "group", "kernel"),
    [(7, 5, 8, 1, 3), (6, 9, 12, 3, 3), (5, 8, 16, 4, 5), (9, 4, 32, 8, 3), (4, 11, 10, 2, 5)],
)
def test_matches_reference_forward_and_gradients(height, width, channels, group, kernel):
    points = kernel * kernel
    # offsets of several pixels: many samples fall outside the map (zero padding) or straddle its border
    value, offset, mask = _inputs(2, height, width, channels, group, points, offset_std=3.0)
    _compare(value, offset, mask, group=group, kernel_size=kernel, padding=(kernel - 1) // 2, offset_scale=1.0)


def test_offsets_far_outside_the_map_read_zeros():
    value, offset, mask = _inputs(1, 5, 6, 8, 2, 9, offset_std=1.0)
    with torch.no_grad():
        offset[..., 0::2] = 40.0  # every x far right of the map
    output = _compare(value, offset, mask, group=2)
    assert torch.count_nonzero(output) == 0


def test_integer_and_border_positions():
    """Offsets that land exactly on pixel centres and on the last row/column (floor corner at size - 1).

    Bilinear sampling has a kink at integer positions, so the offset gradient there is one-sided and flips with the last
    bit of the coordinate (the original's normalise/unnormalise round trip decides the side): only the forward, value
    and mask gradients are compared here; the offset gradient is covered at generic positions above."""
    value, offset, mask = _inputs(1, 6, 7, 8, 2, 9, offset_std=1.0)
    with torch.no_grad():
        offset.copy_(torch.randint(-2, 3, offset.shape).float())
        offset[0, -1, -1] = 1.0  # bottom-right position: kernel corner + 1 hits exactly (H, W) - 1 + 1
    _compare(value, offset, mask, check_offset_grad=False, group=2)


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "offset_scale", "remove_center"),
    [(2, 1, 1, 1.0, False), (1, 2, 2, 2.0, False), (1, 1, 1, 0.5, True)],
)
def test_matches_reference_other_options(stride, padding, dilation, offset_scale, remove_center):
    height, width, kernel = 9, 8, 3
    height_out = (height + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1
    width_out = (width + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1
    points = kernel * kernel - int(remove_center)
    value, offset, mask = _inputs(2, height, width, 12, 3, points, 2.0, out_hw=(height_out, width_out))
    _compare(
        value,
        offset,
        mask,
        group=3,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        offset_scale=offset_scale,
        remove_center=remove_center,
    )


def test_bf16_autocast_close_to_fp32_reference():
    value, offset, mask = _inputs(2, 6, 9, 16, 4, 9, offset_std=2.0)
    expected = dcnv3_core_reference(value, offset, mask, group=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # inside a model, the projections feeding the core produce bf16 tensors under autocast
        actual = dcnv3_core(value.bfloat16(), offset.bfloat16(), mask.bfloat16(), group=4)
        reference_bf16 = dcnv3_core_reference(value.bfloat16(), offset.bfloat16(), mask.bfloat16(), group=4)
    assert actual.dtype == torch.bfloat16
    torch.testing.assert_close(actual.float(), reference_bf16.float(), atol=3e-2, rtol=3e-2)
    torch.testing.assert_close(actual.float(), expected, atol=6e-2, rtol=6e-2)
    grads = torch.autograd.grad(actual.float().square().sum(), (value, offset, mask))
    expected_grads = torch.autograd.grad(expected.square().sum(), (value, offset, mask))
    for actual_grad, expected_grad in zip(grads, expected_grads):
        assert actual_grad.dtype == torch.float32
        cosine = torch.nn.functional.cosine_similarity(actual_grad.flatten(), expected_grad.flatten(), dim=0)
        assert cosine > 0.99


def test_coordinates_follow_the_original_layout():
    """Kernel points are x-major (the original's meshgrid), offsets are (x, y) pairs scaled by offset_scale."""
    kx, ky = dcnv3_kernel_points(3)
    assert kx.tolist() == [-1, -1, -1, 0, 0, 0, 1, 1, 1]
    assert ky.tolist() == [-1, 0, 1, -1, 0, 1, -1, 0, 1]
    offset = torch.zeros(1, 2, 3, 2 * 9 * 2)
    offset[0, 1, 2, 2 * 9 + 4 * 2] = 0.25  # group 1, centre point, x
    x, y = dcnv3_sampling_locations(offset, group=2, offset_scale=2.0)
    assert x.shape == (1, 2, 3, 2, 9)
    assert x[0, 1, 2, 1, 4].item() == pytest.approx(2.0 + 0.5)
    assert y[0, 1, 2, 1, 4].item() == pytest.approx(1.0)
    assert x[0, 0, 0, 0, 0].item() == pytest.approx(-2.0)  # (0 + (-1)) * offset_scale


def test_bad_inputs_name_the_fix():
    value, offset, mask = _inputs(1, 4, 4, 10, 2, 9, 1.0)
    with pytest.raises(ValueError, match="divisible by group"):
        dcnv3_core(value, offset, mask, group=3)
    with pytest.raises(ValueError, match="offset needs 36 channels"):
        dcnv3_core(value, offset[..., :-2], mask, group=2)
    with pytest.raises(ValueError, match="channels-last 4-D"):
        dcnv3_core(value[0], offset, mask, group=2)


def test_non_finite_offsets_stay_local():
    """NaN/inf offsets (a diverged run) give non-finite samples, but never read outside the table: every other
    (position, group) output is unaffected, and the backward runs."""
    value, offset, mask = _inputs(1, 5, 6, 8, 2, 9, offset_std=1.0)
    with torch.no_grad():
        offset[0, 1, 2, 0] = float("nan")  # group 0, point 0, x
        offset[0, 3, 4, 2 * 9 + 2] = float("inf")  # group 1, point 1, x
    output = dcnv3_core(value, offset, mask, group=2)
    affected = torch.zeros(output.shape, dtype=torch.bool)
    affected[0, 1, 2, :4] = affected[0, 3, 4, 4:] = True
    assert not torch.isfinite(output[affected]).any()
    expected = dcnv3_core_reference(value, torch.nan_to_num(offset, nan=0.0, posinf=0.0), mask, group=2)
    torch.testing.assert_close(output[~affected], expected[~affected], **TOLERANCE)
    output[~affected].sum().backward()
    assert value.grad.shape == value.shape


def test_fallback_backward_without_sparse_kernels_matches(monkeypatch):
    """Devices without sparse CSR kernels (e.g. MPS) take the materialising index_add_/gather backward: same numbers."""
    from hf_unified_pretrain.layers import dcnv3

    value, offset, mask = _inputs(2, 6, 7, 12, 3, 9, offset_std=3.0)
    monkeypatch.setattr(dcnv3, "_sparse_backward_supported", lambda device: False)
    _compare(value, offset, mask, group=3)


def test_custom_operators_pass_opcheck():
    """The core is a pair of torch.library custom ops: schema, fake (meta) shapes, autograd registration and the
    AOT-dispatch path that torch.compile uses are all consistent with the real kernels."""
    from hf_unified_pretrain.layers import dcnv3

    value, offset, mask = _inputs(2, 5, 6, 12, 3, 8, offset_std=2.0)
    args = (value, offset, mask, 3, [3, 3], [1, 1], [1, 1], [1, 1], 1.5, True)
    torch.library.opcheck(dcnv3._dcnv3_forward, args)
    output, top_left, weights, fraction = dcnv3._dcnv3_forward(*args)
    grad = torch.randn(output.shape, generator=torch.Generator().manual_seed(3))
    backward_args = (grad, value.detach(), mask.detach(), top_left, weights, fraction, 3, 1.5)
    torch.library.opcheck(dcnv3._dcnv3_backward, backward_args)


def test_compiles_in_one_graph_and_matches_reference():
    """torch.compile traces the core without a graph break (fullgraph), forward and backward through the registered
    autograd formula, with the reference's numbers (aot_eager: the same tracing as inductor, no C++ build)."""
    value, offset, mask = _inputs(2, 6, 7, 12, 3, 9, offset_std=3.0)
    compiled = torch.compile(dcnv3_core, fullgraph=True, backend="aot_eager", dynamic=False)
    expected = dcnv3_core_reference(value, offset, mask, group=3, offset_scale=0.5)
    actual = compiled(value, offset, mask, group=3, offset_scale=0.5)
    torch.testing.assert_close(actual, expected, **TOLERANCE)
    grad = torch.randn(expected.shape, generator=torch.Generator().manual_seed(5))
    expected_grads = torch.autograd.grad(expected, (value, offset, mask), grad)
    actual_grads = torch.autograd.grad(actual, (value, offset, mask), grad)
    for name, a, e in zip(("value", "offset", "mask"), actual_grads, expected_grads):
        torch.testing.assert_close(a, e, **TOLERANCE, msg=lambda m, n=name: f"grad of {n}: {m}")
