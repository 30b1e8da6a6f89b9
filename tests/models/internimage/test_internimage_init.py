"""A freshly built InternImage starts where the original does: DCNv3 samples the regular grid with uniform point
weights (zero offset, mask and centre-gate heads), xavier-uniform DCNv3 projections, truncated-normal other linears.

transformers skips `_init_weights` for modules that own no parameters directly (such as the DCNv3 mixer), so these
values are checked on a model built from its config, not assumed."""

import math

import pytest
import torch

from hf_unified_pretrain.models.internimage import InternImageConfig, InternImageModel


@pytest.mark.parametrize("center_feature_scale", [False, True])
def test_fresh_model_has_the_original_initialisation(center_feature_scale):
    torch.manual_seed(0)
    config = InternImageConfig.from_preset(
        "tiny", center_feature_scale=center_feature_scale, initializer_range=0.02, layer_scale=0.25
    )
    model = InternImageModel(config)
    heads = [".dcn.offset.", ".dcn.mask."] + ([".dcn.center_feature_scale_proj."] if center_feature_scale else [])
    seen = {"zero": 0, "xavier": 0, "trunc_normal": 0, "layer_scale": 0}
    for name, parameter in model.named_parameters():
        if any(head in name for head in heads):
            assert torch.count_nonzero(parameter) == 0, f"{name} should start at zero"
            seen["zero"] += 1
        elif (".dcn.input_proj." in name or ".dcn.output_proj." in name) and name.endswith("weight"):
            bound = math.sqrt(6 / sum(parameter.shape))
            assert parameter.abs().max() <= bound
            # Uniform on [-bound, bound]: std bound / sqrt(3), far above a 0.02 truncated normal at these widths.
            torch.testing.assert_close(parameter.std().item(), bound / math.sqrt(3), rtol=0.2, atol=0.0)
            seen["xavier"] += 1
        elif ".mlp.fc" in name and name.endswith("weight"):
            assert parameter.abs().max() <= 2.0 + 1e-6  # truncated at +-2 (absolute), std 0.02
            torch.testing.assert_close(parameter.std().item(), 0.02, rtol=0.2, atol=0.0)
            seen["trunc_normal"] += 1
        elif "layer_scale" in name:
            torch.testing.assert_close(parameter, torch.full_like(parameter, 0.25))
            seen["layer_scale"] += 1
    assert seen["zero"] > 0 and seen["xavier"] > 0 and seen["trunc_normal"] > 0
    if config.layer_scale is not None and not config.post_norm:
        assert seen["layer_scale"] > 0


def test_zero_heads_make_the_first_forward_a_regular_grid_average():
    """With zero offsets and a uniform softmax mask, DCNv3 is a 3x3 mean of the projected input (zero padded)."""
    torch.manual_seed(0)
    model = InternImageModel(InternImageConfig.from_preset("tiny")).eval()
    dcn = model.encoder.stages[0].layers[0].dcn
    hidden = torch.randn(2, 6, 5, dcn.channels)
    projected = dcn.input_proj(hidden)
    mean = torch.nn.functional.avg_pool2d(
        projected.permute(0, 3, 1, 2), 3, stride=1, padding=1, count_include_pad=True
    ).permute(0, 2, 3, 1)
    torch.testing.assert_close(dcn(hidden), dcn.output_proj(mean), atol=1e-5, rtol=1e-4)
