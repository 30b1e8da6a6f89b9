"""Block-wise image mixing (M3I multi-input): regions, bookkeeping, soft labels on constructed images."""

from __future__ import annotations

import pytest
import torch

from hf_unified_pretrain.data.mixing import mix_images, partner_indices
from hf_unified_pretrain.masking.mixing import (
    block_mix_sources,
    mix_soft_labels,
    source_fractions,
    source_index_to_pixels,
)


def _constant_images(values: list[float], height: int, width: int) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 3, height, width).clone()


def test_block_mix_exact_count_on_non_square_grid():
    generator = torch.Generator().manual_seed(3)
    index = block_mix_sources(5, (3, 5), 6, generator=generator)
    assert index.shape == (5, 15) and index.dtype == torch.long
    assert index.sum(dim=1).tolist() == [6] * 5
    torch.testing.assert_close(source_fractions(index, 2), torch.tensor([[9 / 15, 6 / 15]] * 5))
    again = block_mix_sources(5, (3, 5), 6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(index, again)


def test_mixed_pixels_come_from_the_recorded_source():
    # 2x3 grid of 4-pixel patches (8x12 images); every pixel value says which image it came from.
    first = _constant_images([10.0, 20.0], 8, 12)
    second = _constant_images([30.0, 40.0], 8, 12)
    index = torch.tensor([[0, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 1]])
    mixed = mix_images([first, second], index, patch_size=4)
    expected_0 = torch.tensor([[10.0, 30.0, 30.0], [10.0, 10.0, 10.0]])
    expected_1 = torch.tensor([[40.0, 40.0, 40.0], [40.0, 20.0, 40.0]])
    for b, expected in enumerate((expected_0, expected_1)):
        cells = mixed[b, :, ::4, ::4]  # one pixel per patch
        assert torch.equal(cells, expected.expand(3, -1, -1))
        assert torch.equal(mixed[b], expected.repeat_interleave(4, 0).repeat_interleave(4, 1).expand(3, -1, -1))
    pixel_map = source_index_to_pixels(index, (2, 3), 4)
    assert pixel_map.shape == (2, 8, 12) and pixel_map[0, 0:4, 4:12].eq(1).all() and pixel_map[0, 4:, :].eq(0).all()


def test_three_sources_and_fractions():
    images = [_constant_images([float(s)], 4, 6) for s in range(3)]
    index = torch.tensor([[2, 0, 1, 2, 2, 1]])  # 2x3 grid, patch 2
    mixed = mix_images(images, index, patch_size=2)
    assert torch.equal(mixed[0, 0, ::2, ::2].flatten().long(), index[0])
    torch.testing.assert_close(source_fractions(index, 3), torch.tensor([[1 / 6, 2 / 6, 3 / 6]]))


def test_soft_labels_are_area_weighted():
    fractions = torch.tensor([[0.75, 0.25], [0.4, 0.6]])
    ids = torch.tensor([[2, 0], [1, 1]])
    soft = mix_soft_labels(ids, fractions, num_classes=4)
    torch.testing.assert_close(soft, torch.tensor([[0.25, 0.0, 0.75, 0.0], [0.0, 1.0, 0.0, 0.0]]))
    # Multi-label images (COCO): each source's categories as a normalised multi-hot distribution.
    distributions = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]])
    soft = mix_soft_labels(distributions, torch.tensor([[0.8, 0.2]]))
    torch.testing.assert_close(soft, torch.tensor([[0.4, 0.4, 0.2]]))


def test_partners_are_other_images():
    partners = partner_indices(4)
    assert partners.tolist() == [1, 2, 3, 0]
    with pytest.raises(ValueError, match="at least 2"):
        partner_indices(1)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="num_classes"):
        mix_soft_labels(torch.tensor([[0, 1]]), torch.tensor([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="source_index must be"):
        mix_images([torch.zeros(1, 3, 8, 8)] * 2, torch.zeros(1, 3, dtype=torch.long), patch_size=4)
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        source_fractions(torch.tensor([[0, 2]]), 2)
