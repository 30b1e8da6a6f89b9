"""ITPNBackbone's stride-64 stage needs 4 patches a side: the default out_features follow the config's own input
size (the smallest preset works out of the box) and asking for a stage the input cannot reach is a clear error."""

import pytest
import torch

from hf_unified_pretrain.models.itpn import ITPNBackbone, ITPNConfig


def _backbone(**overrides) -> ITPNBackbone:
    torch.manual_seed(0)
    return ITPNBackbone(ITPNConfig.from_preset("itpn-tiny-test", **overrides)).eval()


@pytest.mark.parametrize(("image_size", "stage", "side"), [(32, "stage4", 1), (48, "stage4", 1), (64, "stage5", 1)])
def test_default_out_features_are_the_last_stage_the_config_size_reaches(image_size, stage, side):
    backbone = _backbone(image_size=image_size)
    assert backbone.out_features == [stage]
    with torch.no_grad():
        (feature_map,) = backbone(torch.randn(2, 3, image_size, image_size)).feature_maps
    assert feature_map.shape == (2, backbone.channels[0], side, side)
    assert torch.isfinite(feature_map).all()


def test_released_sizes_keep_the_stride_64_stage_as_default():
    assert ITPNConfig().out_features == ["stage5"]  # 224 px, patch 16
    assert ITPNConfig(image_size=16, patch_size=16).out_features == ["stage3"]


@pytest.mark.parametrize("layout", ["seg", "det"])
def test_a_stage_beyond_the_input_is_a_clear_error(layout):
    backbone = _backbone(out_features=["stage3", "stage5"], backbone_layout=layout)
    with pytest.raises(ValueError, match=r"'stage5', which needs inputs of at least 64 px.*up to 'stage4'"):
        backbone(torch.randn(1, 3, 32, 32))
    # The same backbone reaches stage 5 on 64-pixel inputs (position tables interpolated).
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 64, 64), interpolate_pos_encoding=True).feature_maps
    assert [tuple(m.shape[-2:]) for m in maps] == [(4, 4), (1, 1)]
