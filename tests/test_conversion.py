"""The shared conversion convention: reading original checkpoints, key checks that name every problem, `--set`."""

import argparse

import pytest
import torch
from safetensors.torch import save_file

from hf_unified_pretrain.conversion import (
    ConversionError,
    apply_overrides,
    check_converted_keys,
    load_original_checkpoint,
    parse_overrides,
)
from hf_unified_pretrain.models.mvp import MVPConfig


@pytest.fixture
def state():
    return {"blocks.0.weight": torch.arange(6.0).reshape(2, 3), "head.bias": torch.tensor([0.5, -1.0])}


@pytest.mark.parametrize("wrapper", ["model", "module", "state_dict", "model_state"])
def test_pickles_are_unwrapped_and_their_other_entries_returned(tmp_path, state, wrapper):
    path = tmp_path / "ckpt.pth"
    torch.save({wrapper: state, "epoch": 7, "args": argparse.Namespace(embed_dim=512, depth=24)}, path)
    loaded, extras = load_original_checkpoint(path)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert extras == {"epoch": 7, "args": {"embed_dim": 512, "depth": 24}}


def test_nested_wrappers_and_ddp_prefix(tmp_path, state):
    torch.save(
        {"model": {"module": {f"module.{k}": v for k, v in state.items()}}, "hyperparams": {"a": 1}}, tmp_path / "c.pt"
    )
    loaded, extras = load_original_checkpoint(tmp_path / "c.pt")
    assert sorted(loaded) == sorted(state) and extras == {"hyperparams": {"a": 1}}


def test_flat_dict_splits_tensors_from_other_entries(tmp_path, state):
    torch.save({**state, "step": 3}, tmp_path / "flat.pth")
    loaded, extras = load_original_checkpoint(tmp_path / "flat.pth")
    assert sorted(loaded) == sorted(state) and extras == {"step": 3}


def test_safetensors_file_and_folder_with_config(tmp_path, state):
    save_file(state, tmp_path / "weights.safetensors", metadata={"format": "pt"})
    loaded, extras = load_original_checkpoint(tmp_path / "weights.safetensors")
    assert torch.equal(loaded["head.bias"], state["head.bias"]) and extras == {"metadata": {"format": "pt"}}

    folder = tmp_path / "folder"
    folder.mkdir()
    save_file(state, folder / "model.safetensors")
    (folder / "config.json").write_text('{"model_type": "beit", "hidden_size": 8}')
    loaded, extras = load_original_checkpoint(folder)
    assert sorted(loaded) == sorted(state) and extras["config"] == {"model_type": "beit", "hidden_size": 8}


def test_unreadable_inputs_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_original_checkpoint(tmp_path / "absent.pth")
    torch.save({"epoch": 1, "model": {"note": "no tensors"}}, tmp_path / "empty.pth")
    with pytest.raises(ValueError, match="holds no tensors"):
        load_original_checkpoint(tmp_path / "empty.pth")
    torch.save({"w": torch.ones(1), "obj": torch.nn.Identity()}, tmp_path / "pickled_module.pth")
    with pytest.raises(ValueError, match="weights_only=True"):
        load_original_checkpoint(tmp_path / "pickled_module.pth")


def test_check_converted_keys_lists_every_problem_by_name():
    model_state = {"a.weight": torch.empty(2, 3), "b.bias": torch.empty(4), "c.weight": torch.empty(1)}
    converted = {"a.weight": torch.zeros(3, 2), "b.bias": torch.zeros(4), "x.extra": torch.zeros(1)}
    with pytest.raises(ConversionError) as info:
        check_converted_keys(converted, model_state, unmapped=["orig.unmapped"], source_of={"x.extra": "orig.x"})
    error = info.value
    assert isinstance(error, ValueError)
    assert error.unknown == ["orig.unmapped", "orig.x (as x.extra)"]
    assert error.missing == ["c.weight"]
    assert error.mismatched == ["a.weight"] and error.shapes["a.weight"] == ((3, 2), (2, 3))
    assert "c.weight" in str(error) and "orig.unmapped" in str(error) and "(3, 2) vs model (2, 3)" in str(error)


def test_check_converted_keys_accepts_an_exact_fit_and_allowed_missing():
    model_state = {"a": (2,), "b": (1,)}
    check_converted_keys({"a": torch.zeros(2)}, model_state, allow_missing=["b"])
    with pytest.raises(ConversionError, match="missing keys"):
        check_converted_keys({"a": torch.zeros(2)}, model_state)


def test_set_overrides_are_parsed_as_json_validated_and_checked_by_name():
    assert parse_overrides(["num_labels=3", "drop_path_rate=0.1", "hidden_act=gelu", "out_indices=[1, 2]"]) == {
        "num_labels": 3,
        "drop_path_rate": 0.1,
        "hidden_act": "gelu",
        "out_indices": [1, 2],
    }
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["num_labels"])
    config = MVPConfig.from_preset("tiny")
    apply_overrides(config, {"drop_path_rate": 0.2})
    assert config.drop_path_rate == 0.2
    with pytest.raises(ValueError, match="no field 'drop_path_rat'.*drop_path_rate"):
        apply_overrides(config, {"drop_path_rat": 0.1})


def _identity_converter(tmp_path, state_dict, hyperparams, *argv):
    from hf_unified_pretrain.conversion import converter_main

    torch.save({"model": state_dict, "hyperparams": hyperparams, "epoch": 1}, tmp_path / "original.pth")
    return converter_main(
        "mvp",
        ["--checkpoint", str(tmp_path / "original.pth"), "--output_dir", str(tmp_path / "out"), *argv],
        lambda original_kwargs, kind: MVPConfig(**original_kwargs),
        lambda original_state_dict, config: dict(original_state_dict),
        kinds=("identity",),
    )


def test_converter_main_defaults_read_the_stored_arguments_and_write_a_complete_folder(tmp_path):
    from transformers import AutoImageProcessor

    from hf_unified_pretrain.cards import card_metadata
    from hf_unified_pretrain.models.mvp import MVP_PRESETS, MVPForPreTraining

    hyperparams = {**MVP_PRESETS["tiny"], "image_size": 48}
    reference = MVPForPreTraining(MVPConfig(**hyperparams))
    with pytest.raises(ConversionError) as info:  # --set changed the head: the checkpoint no longer fits it
        _identity_converter(tmp_path, reference.state_dict(), hyperparams, "--set", "teacher_dim=20")
    assert info.value.mismatched == ["head.projection.bias", "head.projection.weight"]
    model = _identity_converter(tmp_path, reference.state_dict(), hyperparams)
    loaded = MVPForPreTraining.from_pretrained(tmp_path / "out")
    assert loaded.config.image_size == 48 and type(model) is MVPForPreTraining
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in reference.state_dict().items())
    assert AutoImageProcessor.from_pretrained(tmp_path / "out").size == {"height": 48, "width": 48}
    assert card_metadata(tmp_path / "out" / "README.md")["license"] == "apache-2.0"


def test_converter_main_names_missing_keys(tmp_path):
    from hf_unified_pretrain.models.mvp import MVP_PRESETS, MVPForPreTraining

    state_dict = MVPForPreTraining(MVPConfig(**MVP_PRESETS["tiny"])).state_dict()
    del state_dict["head.projection.bias"]
    with pytest.raises(ConversionError) as info:
        _identity_converter(tmp_path, state_dict, MVP_PRESETS["tiny"], "--no_model_card")
    assert info.value.missing == ["head.projection.bias"] and not (tmp_path / "out").exists()
