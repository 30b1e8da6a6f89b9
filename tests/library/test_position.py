"""Position-table resizing, grid checks and strict forward kwargs: values against independent computations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hf_unified_pretrain.layers import (
    check_position_grid,
    grid_of_size,
    interpolate_pos_embed,
    relative_position_index,
    resize_relative_position_bias_table,
    strict_forward_kwargs,
)


def _linear_resize_1d(values: list[float], size: int) -> list[float]:
    """Half-pixel-centre linear resampling (align_corners=False), written out from its definition."""
    scale = len(values) / size
    out = []
    for index in range(size):
        source = max((index + 0.5) * scale - 0.5, 0.0)
        low = min(int(source), len(values) - 1)
        high = min(low + 1, len(values) - 1)
        weight = source - low
        out.append((1 - weight) * values[low] + weight * values[high])
    return out


def _bilinear_reference(image: list[list[float]], height: int, width: int) -> list[list[float]]:
    """Separable bilinear resize: rows first, then columns."""
    rows = [_linear_resize_1d(row, width) for row in image]
    columns = [_linear_resize_1d([row[col] for row in rows], height) for col in range(width)]
    return [[columns[col][row] for col in range(width)] for row in range(height)]


def test_relative_position_bias_table_resize_matches_a_hand_written_bilinear_on_a_non_square_grid():
    old_grid, new_grid, heads, extra = (2, 3), (3, 5), 2, 3
    num_offsets = (2 * 2 - 1) * (2 * 3 - 1)  # a 3x5 offset image
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(num_offsets + extra, heads, generator=generator)

    resized = resize_relative_position_bias_table(table, old_grid, new_grid, num_extra_tokens=extra)

    assert resized.shape == ((2 * 3 - 1) * (2 * 5 - 1) + extra, heads)
    torch.testing.assert_close(resized[-extra:], table[-extra:], rtol=0, atol=0)  # [CLS] rows kept as they are
    for head in range(heads):
        # Row index = row offset (dh + H - 1), column = column offset (dw + W - 1): the layout of the index.
        image = table[:num_offsets, head].reshape(3, 5).tolist()
        expected = torch.tensor(_bilinear_reference(image, 5, 9)).reshape(-1)
        torch.testing.assert_close(resized[:-extra, head], expected, rtol=1e-6, atol=1e-6)


def test_relative_position_bias_table_layout_follows_the_index():
    # A table holding 10 * row offset + column offset at every (dh, dw): the index must pick exactly that value.
    grid = (2, 3)
    offsets = torch.tensor([[10.0 * dh + dw for dw in range(-2, 3)] for dh in range(-1, 2)])
    table = offsets.reshape(-1, 1)
    index = relative_position_index(grid, with_cls_token=False)
    coords = [(row, col) for row in range(grid[0]) for col in range(grid[1])]
    for query, (qr, qc) in enumerate(coords):
        for key, (kr, kc) in enumerate(coords):
            assert table[index[query, key], 0].item() == 10.0 * (qr - kr) + (qc - kc)
    # Upsampling a function linear in the offsets keeps it linear in the interior (no clamping there).
    resized = resize_relative_position_bias_table(table, grid, (4, 6)).reshape(7, 11)
    torch.testing.assert_close(resized[3, 5], torch.tensor(0.0))  # the zero offset stays at the centre


def test_relative_position_bias_table_resize_without_change_and_bad_shapes():
    table = torch.randn(9 + 3, 4)
    assert resize_relative_position_bias_table(table, 2, 2, num_extra_tokens=3) is table
    with pytest.raises(ValueError, match=r"\(12, heads\), got \(9, 4\)"):
        resize_relative_position_bias_table(table[:9], 2, 3, num_extra_tokens=3)


def test_interpolate_pos_embed_is_bicubic_on_a_non_square_grid_and_keeps_the_prefix():
    generator = torch.Generator().manual_seed(1)
    pos = torch.randn(1, 1 + 2 * 3, 4, generator=generator)
    resized = interpolate_pos_embed(pos, (2, 3), (4, 5), num_prefix_tokens=1)
    assert resized.shape == (1, 1 + 20, 4)
    torch.testing.assert_close(resized[:, :1], pos[:, :1], rtol=0, atol=0)
    # Independent: the grid as an image per channel, resized by torch's bicubic with half-pixel centres.
    image = pos[0, 1:].reshape(2, 3, 4).permute(2, 0, 1)[None]
    expected = nn.Upsample(size=(4, 5), mode="bicubic", align_corners=False)(image)[0].permute(1, 2, 0).reshape(20, 4)
    torch.testing.assert_close(resized[0, 1:], expected)


def test_legacy_scale_factor_resamples_even_an_unchanged_grid():
    pos = torch.randn(1, 16, 8, generator=torch.Generator().manual_seed(2))
    assert interpolate_pos_embed(pos, 4, 4) is pos
    legacy = interpolate_pos_embed(pos, 4, 4, legacy_scale_factor=True)
    assert legacy.shape == pos.shape and not torch.allclose(legacy, pos)
    assert interpolate_pos_embed(pos, 4, (6, 5), legacy_scale_factor=True).shape == (1, 30, 8)


@pytest.mark.parametrize(
    ("num_cells", "like", "expected"), [(36, (3, 5), (6, 6)), (60, (3, 5), (6, 10)), (15, (5, 3), (5, 3))]
)
def test_grid_of_size(num_cells, like, expected):
    assert grid_of_size(num_cells, like) == expected


def test_grid_of_size_rejects_unknown_shapes():
    with pytest.raises(ValueError, match="neither square nor of the aspect ratio 4:4"):
        grid_of_size(12, 4)


def test_check_position_grid_names_the_flag():
    check_position_grid((4, 4), 4, interpolate_pos_encoding=False, patch_size=16)
    check_position_grid((6, 5), 4, interpolate_pos_encoding=True, patch_size=16)
    with pytest.raises(ValueError, match=r"96x80 pixels \(6x5 patches\).*64x64.*interpolate_pos_encoding=True"):
        check_position_grid((6, 5), 4, interpolate_pos_encoding=False, patch_size=16)


class _Toy(nn.Module):
    @strict_forward_kwargs
    def forward(self, pixel_values, bool_masked_pos=None, **kwargs):
        return bool_masked_pos, kwargs


def test_strict_forward_kwargs_rejects_misspelt_arguments_and_keeps_transformers_ones():
    toy = _Toy()
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['bool_mask_pos'\].*'bool_masked_pos'"):
        toy(1, bool_mask_pos=True)
    mask, kwargs = toy(1, bool_masked_pos=True, output_attentions=True, return_dict=False, num_items_in_batch=3)
    assert mask is True and kwargs == {"output_attentions": True, "return_dict": False, "num_items_in_batch": 3}
