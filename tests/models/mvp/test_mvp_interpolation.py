"""MVP at any input resolution: BEiT parity with `interpolate_pos_encoding`, tables resized on load, strict kwargs."""

from __future__ import annotations

import pytest
import torch
from transformers import BeitConfig, BeitModel

import hf_unified_pretrain  # noqa: F401  (registers the Auto classes)
from hf_unified_pretrain.layers import interpolate_pos_embed, resize_relative_position_bias_table
from hf_unified_pretrain.models.mvp import (
    MVPBackbone,
    MVPConfig,
    MVPForImageClassification,
    MVPForPreTraining,
    MVPModel,
)
from hf_unified_pretrain.models.mvp.convert_mvp_original_to_hf import config_from_original, load_beit_weights

from .helpers import TEACHER_DIM

# Every kind of position table at once: absolute embeddings, a table per block and a shared one.
ALL_TABLES = {
    "use_absolute_position_embeddings": True,
    "use_relative_position_bias": True,
    "use_shared_relative_position_bias": True,
}


def _randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Position/bias tables start at zero in BEiT and MVP: random values make the interpolation visible."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model.eval()


def _beit_and_mvp(image_size: int, patch_size: int) -> tuple[BeitModel, MVPModel]:
    config = BeitConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=image_size,
        patch_size=patch_size,
        layer_norm_eps=1e-6,
        use_mask_token=True,
        use_mean_pooling=True,
        layer_scale_init_value=0.1,
        **ALL_TABLES,
    )
    beit = _randomised(BeitModel(config))
    model = MVPModel(config_from_original(beit.config.to_dict())).eval()
    load_beit_weights(model, {f"beit.{key}": value for key, value in beit.state_dict().items()})
    return beit, model


@pytest.mark.parametrize(
    ("trained", "patch", "height", "width"),
    [(224, 16, 384, 384), (64, 16, 96, 64), (64, 16, 48, 112)],
    ids=["224-to-384", "64-to-96x64", "64-to-48x112"],
)
def test_converted_beit_equals_beit_at_another_resolution(trained, patch, height, width):
    beit, model = _beit_and_mvp(trained, patch)
    pixel_values = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(1))
    num_patches = (height // patch) * (width // patch)
    mask = torch.zeros(1, num_patches, dtype=torch.bool)
    mask[0, 1::3] = True
    with torch.no_grad():
        for kwargs in ({}, {"bool_masked_pos": mask}):
            expected = beit(pixel_values, interpolate_pos_encoding=True, output_hidden_states=True, **kwargs)
            actual = model(pixel_values, interpolate_pos_encoding=True, output_hidden_states=True, **kwargs)
            assert actual.last_hidden_state.shape == (1, 1 + num_patches, 32)
            torch.testing.assert_close(actual.last_hidden_state, expected.last_hidden_state, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(actual.pooler_output, expected.pooler_output, atol=1e-5, rtol=1e-4)
            for ours, theirs in zip(actual.hidden_states, expected.hidden_states, strict=True):
                torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    # The interpolation matters: the tables at the trained grid would not even fit these inputs.
    with pytest.raises(ValueError, match="interpolate_pos_encoding=True"):
        model(pixel_values)


def _tiny(**overrides) -> MVPConfig:
    return MVPConfig.from_preset("tiny", **{**ALL_TABLES, **overrides})


def _inputs(model_class, height: int = 48, width: int = 32) -> dict:
    pixel_values = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(2))
    inputs = {"pixel_values": pixel_values}
    if model_class is MVPForPreTraining:
        num_patches = (height // 8) * (width // 8)
        inputs["teacher_features"] = torch.randn(
            2, num_patches, TEACHER_DIM, generator=torch.Generator().manual_seed(3)
        )
        inputs["bool_masked_pos"] = torch.arange(num_patches).expand(2, -1) % 3 == 0
    return inputs


CLASSES = [MVPModel, MVPBackbone, MVPForPreTraining, MVPForImageClassification]


@pytest.mark.parametrize("model_class", CLASSES, ids=lambda c: c.__name__)
def test_other_sizes_need_the_flag_in_every_class(model_class):
    model = model_class(_tiny()).eval()
    with pytest.raises(ValueError, match=r"48x32 pixels \(6x4 patches\).*32x32.*interpolate_pos_encoding=True"):
        model(**_inputs(model_class))
    with torch.no_grad():
        flagged = model(**_inputs(model_class), interpolate_pos_encoding=True)
        # For callers that cannot pass arguments (DETR heads): the config field has the same effect.
        model.config.interpolate_pos_encoding = True
        from_config = model(**_inputs(model_class))
    for ours, reference in zip(from_config.to_tuple(), flagged.to_tuple(), strict=True):
        if isinstance(ours, torch.Tensor):
            torch.testing.assert_close(ours, reference)
    # Without position tables every size runs as it is.
    bare = model_class(_tiny(**dict.fromkeys(ALL_TABLES, False))).eval()
    bare(**_inputs(model_class))


@pytest.mark.parametrize("model_class", CLASSES, ids=lambda c: c.__name__)
def test_unknown_keyword_arguments_are_errors_in_every_class(model_class):
    model = model_class(_tiny()).eval()
    inputs = _inputs(model_class, 32, 32)
    inputs.pop("bool_masked_pos", None)
    with pytest.raises(TypeError, match=r"\['bool_mask_pos'\].*'pixel_values'.*'interpolate_pos_encoding'"):
        model(**inputs, bool_mask_pos=torch.zeros(2, 16, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"\['interpolate_pos_embedding'\]"):
        model(**inputs, interpolate_pos_embedding=True)
    # transformers' own arguments stay accepted (the Trainer passes num_items_in_batch to models taking **kwargs).
    legit = {"output_attentions": True, "output_hidden_states": True, "return_dict": False}
    if model_class is MVPForPreTraining:
        legit["num_items_in_batch"] = torch.tensor(4)
    model.set_attn_implementation("eager")
    outputs = model(**inputs, **legit)
    assert isinstance(outputs, tuple)


def test_masked_pretraining_mask_is_not_replaced_by_a_random_one():
    model = MVPForPreTraining(_tiny()).eval()
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :5] = True
    out = model(**{**_inputs(MVPForPreTraining, 32, 32), "bool_masked_pos": mask})
    assert torch.equal(out.bool_masked_pos, mask)


def test_checkpoint_of_another_image_size_is_interpolated_on_load(tmp_path):
    source = _randomised(MVPForPreTraining(_tiny()))
    source.save_pretrained(tmp_path)
    config = MVPConfig.from_pretrained(tmp_path, image_size=[48, 32])
    loaded, info = MVPModel.from_pretrained(tmp_path, config=config, output_loading_info=True)
    assert not info["mismatched_keys"] and not info["unexpected_keys"]

    expected_state = {key.removeprefix("mvp."): value for key, value in source.state_dict().items()}
    resized = set()
    for key, value in loaded.state_dict().items():
        if key.endswith("position_embeddings"):
            expected = interpolate_pos_embed(expected_state[key], (4, 4), (6, 4), num_prefix_tokens=1)
        elif key.endswith("relative_position_bias_table"):
            expected = resize_relative_position_bias_table(expected_state[key], (4, 4), (6, 4), num_extra_tokens=3)
        elif key.startswith("pooler."):
            continue  # the pre-training model has no pooler
        else:
            torch.testing.assert_close(value, expected_state[key], rtol=0, atol=0, msg=key)
            continue
        assert value.shape != expected_state[key].shape
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=key)
        resized.add(key)
    assert len(resized) == 4  # absolute embeddings, the shared table and one per block

    # Resizing on load is the same interpolation as the forward's: outputs at the new size agree.
    pixel_values = _inputs(MVPModel)["pixel_values"]
    with torch.no_grad():
        expected = source.mvp(pixel_values, interpolate_pos_encoding=True).last_hidden_state
        torch.testing.assert_close(loaded.eval()(pixel_values).last_hidden_state, expected)


def test_loading_another_size_without_interpolation_is_a_size_mismatch(tmp_path):
    MVPForPreTraining(_tiny()).save_pretrained(tmp_path)
    config = MVPConfig.from_pretrained(tmp_path, image_size=48, interpolate_pos_encoding_on_load=False)
    with pytest.raises(Exception, match="(?i)mismatch"):
        MVPModel.from_pretrained(tmp_path, config=config)
