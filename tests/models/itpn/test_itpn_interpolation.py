"""iTPN at any input resolution, tables resized on load, strict forward kwargs, output capture through hooks."""

from __future__ import annotations

import pytest
import torch

import hf_unified_pretrain  # noqa: F401  (registers the Auto classes)
from hf_unified_pretrain.layers import (
    get_2d_sincos_pos_embed,
    interpolate_pos_embed,
    resize_relative_position_bias_table,
)
from hf_unified_pretrain.models.itpn import (
    ITPNBackbone,
    ITPNConfig,
    ITPNForImageClassification,
    ITPNForPreTraining,
    ITPNModel,
)

CLASSES = [ITPNModel, ITPNBackbone, ITPNForPreTraining, ITPNForImageClassification]


def _config(**overrides) -> ITPNConfig:
    """CLIP target: relative-position bias tables in every block and absolute position embeddings (4x4 grid)."""
    defaults = {
        "image_size": 64,
        "hidden_size": 32,
        "stage1_depth": 1,
        "stage2_depth": 1,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "fpn_dim": 16,
        "fpn_depth": 1,
        "teacher_dim": 8,
        "num_aux_layers": 1,
        "pretraining_target": "clip",
        "use_relative_position_bias": True,
        "layer_scale_init_value": 0.1,
        "num_masking_patches": None,
        "mask_ratio": 0.4,
        "mask_min_block_tokens": 1,
    }
    return ITPNConfig(**{**defaults, **overrides})


def _randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def _inputs(model_class, height: int = 96, width: int = 80) -> dict:
    generator = torch.Generator().manual_seed(1)
    inputs = {"pixel_values": torch.randn(2, 3, height, width, generator=generator)}
    if model_class is ITPNForPreTraining:
        num_patches = (height // 16) * (width // 16)
        inputs["teacher_features"] = torch.randn(2, num_patches, 8, generator=generator)
        inputs["bool_masked_pos"] = torch.arange(num_patches).expand(2, -1) % 3 == 0
    return inputs


@pytest.mark.parametrize("model_class", CLASSES, ids=lambda c: c.__name__)
def test_other_sizes_need_the_flag_in_every_class(model_class):
    model = _randomised(model_class(_config()))
    with pytest.raises(ValueError, match=r"96x80 pixels \(6x5 patches\).*64x64.*interpolate_pos_encoding=True"):
        model(**_inputs(model_class))
    with torch.no_grad():
        flagged = model(**_inputs(model_class), interpolate_pos_encoding=True)
        model.config.interpolate_pos_encoding = True  # for heads that cannot pass the argument
        from_config = model(**_inputs(model_class))
    for ours, reference in zip(from_config.to_tuple(), flagged.to_tuple(), strict=True):
        if isinstance(ours, torch.Tensor):
            torch.testing.assert_close(ours, reference)
    if model_class is ITPNModel:
        assert flagged.last_hidden_state.shape == (2, 30, 32)
    # Without any position table (no absolute embeddings, no relative bias) every size runs as it is.
    bare = model_class(_config(use_relative_position_bias=False, use_absolute_position_embeddings=False)).eval()
    bare(**_inputs(model_class))


@pytest.mark.parametrize("model_class", CLASSES, ids=lambda c: c.__name__)
def test_unknown_keyword_arguments_are_errors_in_every_class(model_class):
    model = model_class(_config()).eval()
    inputs = _inputs(model_class, 64, 64)
    inputs.pop("bool_masked_pos", None)
    with pytest.raises(TypeError, match=r"\['bool_mask_pos'\].*'pixel_values'.*'interpolate_pos_encoding'"):
        model(**inputs, bool_mask_pos=torch.zeros(2, 16, dtype=torch.bool))
    legit = {"output_attentions": True, "output_hidden_states": True, "return_dict": False}
    if model_class is ITPNForPreTraining:
        legit["num_items_in_batch"] = torch.tensor(4)
    model.set_attn_implementation("eager")
    assert isinstance(model(**inputs, **legit), tuple)


def test_relative_bias_interpolated_in_the_forward_equals_a_model_loaded_at_that_size(tmp_path):
    # Without absolute embeddings (their forward resize is the original's DINO-style one, not the load-time one)
    # the forward interpolation and the load-time resize of the bias tables are the same bilinear map.
    source = _randomised(ITPNModel(_config(use_absolute_position_embeddings=False)))
    source.save_pretrained(tmp_path)
    config = ITPNConfig.from_pretrained(tmp_path, image_size=96)
    loaded, info = ITPNModel.from_pretrained(tmp_path, config=config, output_loading_info=True)
    assert not info["mismatched_keys"] and not info["missing_keys"]
    reference = source.state_dict()
    for key, value in loaded.state_dict().items():
        if key.endswith("relative_position_bias_table"):
            assert value.shape == (11 * 11, 2) and reference[key].shape == (7 * 7, 2)
            expected = resize_relative_position_bias_table(reference[key], 4, 6)
            torch.testing.assert_close(value, expected, rtol=0, atol=0)
        else:
            torch.testing.assert_close(value, reference[key], rtol=0, atol=0, msg=key)
    pixel_values = _inputs(ITPNModel, 96, 96)["pixel_values"]
    with torch.no_grad():
        expected = source(pixel_values, interpolate_pos_encoding=True)
        actual = loaded.eval()(pixel_values)
    torch.testing.assert_close(actual.last_hidden_state, expected.last_hidden_state)
    for ours, theirs in zip(actual.pyramid_features, expected.pyramid_features, strict=True):
        torch.testing.assert_close(ours, theirs)


def test_pixel_pretraining_checkpoint_loads_at_another_size(tmp_path):
    source = _randomised(ITPNForPreTraining(_config(pretraining_target="pixel", use_relative_position_bias=False)))
    source.save_pretrained(tmp_path)
    config = ITPNConfig.from_pretrained(tmp_path, image_size=96)
    loaded = ITPNForPreTraining.from_pretrained(tmp_path, config=config)
    reference = source.state_dict()
    expected_positions = interpolate_pos_embed(reference["itpn.embeddings.position_embeddings"], 4, 6)
    torch.testing.assert_close(loaded.itpn.embeddings.position_embeddings, expected_positions, rtol=0, atol=0)
    # The decoder's table is fixed sin-cos: recomputed for the new grid rather than interpolated.
    expected_decoder = get_2d_sincos_pos_embed(reference["decoder.position_embeddings"].shape[-1], 6).unsqueeze(0)
    torch.testing.assert_close(loaded.decoder.position_embeddings, expected_decoder, rtol=0, atol=0)
    out = loaded(torch.randn(1, 3, 96, 96), noise=torch.rand(1, 36, generator=torch.Generator().manual_seed(0)))
    assert out.logits.shape == (1, 36, 16 * 16 * 3) and torch.isfinite(out.loss)


def test_loading_another_size_without_interpolation_is_a_size_mismatch(tmp_path):
    ITPNModel(_config()).save_pretrained(tmp_path)
    config = ITPNConfig.from_pretrained(tmp_path, image_size=96, interpolate_pos_encoding_on_load=False)
    with pytest.raises(Exception, match="(?i)mismatch"):
        ITPNModel.from_pretrained(tmp_path, config=config)


def test_hidden_states_and_attentions_are_captured_from_the_stage3_blocks():
    model = _randomised(ITPNModel(_config()))
    model.set_attn_implementation("eager")
    pixel_values = _inputs(ITPNModel, 64, 64)["pixel_values"]
    with torch.no_grad():
        out = model(pixel_values, output_hidden_states=True, output_attentions=True)
        tokens = model.embeddings(pixel_values)[0]
        selected = model(pixel_values, output_hidden_states=[1])
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    torch.testing.assert_close(out.hidden_states[0], tokens)  # the input of stage 3
    torch.testing.assert_close(out.hidden_states[-1], out.stage_features[2][:, :, 0, 0])  # before any final norm
    for attention in out.attentions:
        assert attention.shape == (2, 2, 16, 16)
        torch.testing.assert_close(attention.sum(-1), torch.ones(2, 2, 16))
    assert selected.hidden_states[0] is None and selected.hidden_states[2] is None
    torch.testing.assert_close(selected.hidden_states[1], out.hidden_states[1])
    # Nothing is captured unless asked for; the CLIP auxiliary branch still gets its block output internally.
    pretraining = _randomised(ITPNForPreTraining(_config()))
    result = pretraining(**_inputs(ITPNForPreTraining, 64, 64))
    assert result.hidden_states is None and result.aux_logits is not None


def test_support_flags_are_declared_alike():
    from hf_unified_pretrain.models.mvp import MVPPreTrainedModel

    for flag in ("_supports_sdpa", "_supports_flash_attn", "_supports_flex_attn", "_supports_attention_backend"):
        assert getattr(ITPNModel, flag) == getattr(MVPPreTrainedModel, flag), flag
    assert set(ITPNModel._can_record_outputs) == set(MVPPreTrainedModel._can_record_outputs)
