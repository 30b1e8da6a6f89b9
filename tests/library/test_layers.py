import math

import torch
from transformers.models.beit.modeling_beit import BeitRelativePositionBias

from hf_unified_pretrain.layers import (
    DropPath,
    get_2d_sincos_pos_embed,
    interpolate_pos_embed,
    num_relative_distances,
    relative_position_index,
)


def test_sincos_hand_values_and_orientation():
    column_first = get_2d_sincos_pos_embed(4, (1, 2))
    assert torch.allclose(column_first[1], torch.tensor([math.sin(1), math.cos(1), 0.0, 1.0]))
    row_first = get_2d_sincos_pos_embed(4, (1, 2), row_first=True)
    assert torch.allclose(row_first[1], torch.tensor([0.0, 1.0, math.sin(1), math.cos(1)]))
    with_cls = get_2d_sincos_pos_embed(8, 3, add_cls_token=True)
    assert with_cls.shape == (10, 8) and with_cls[0].abs().sum() == 0 and with_cls.dtype == torch.float32


def test_relative_position_index_matches_beit_and_hand_example():
    for grid in [(3, 4), (14, 14)]:
        assert torch.equal(
            relative_position_index(grid, with_cls_token=True),
            BeitRelativePositionBias.generate_relative_position_index(grid),
        )
    assert relative_position_index((1, 2), with_cls_token=False).tolist() == [[1, 0], [2, 1]]
    assert num_relative_distances(14, with_cls_token=False) == 729
    assert num_relative_distances(14, with_cls_token=True) == 732


def test_interpolate_pos_embed_keeps_prefix_and_constants():
    pos = torch.cat([torch.full((1, 1, 4), 7.0), torch.full((1, 9, 4), 2.0)], dim=1)
    resized = interpolate_pos_embed(pos, 3, (4, 5), num_prefix_tokens=1)
    assert resized.shape == (1, 21, 4)
    assert torch.allclose(resized[:, 0], torch.full((1, 4), 7.0))
    assert torch.allclose(resized[:, 1:], torch.full((1, 20, 4), 2.0))
    assert interpolate_pos_embed(pos, 3, 3, num_prefix_tokens=1) is pos


def test_drop_path_identity_in_eval_and_unbiased_in_training():
    layer = DropPath(0.5)
    x = torch.ones(20000, 1)
    assert torch.equal(layer.eval()(x), x)
    out = layer.train()(x)
    assert set(out.unique().tolist()) <= {0.0, 2.0}
    assert abs(out.mean().item() - 1.0) < 0.05
