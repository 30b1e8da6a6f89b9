"""Shared run-script arguments: JSON recipes, command lines, base learning-rate scaling, pre-training defaults."""

from __future__ import annotations

import json

import pytest

from hf_unified_pretrain.training import (
    DataArguments,
    ModelArguments,
    PretrainingArguments,
    parse_args_or_json,
)


def test_json_recipe_is_parsed_into_the_three_dataclasses(tmp_path):
    recipe = {
        "model_type": "mvp_vision",
        "config_overrides": "hidden_size=64,num_hidden_layers=2",
        "teacher_name_or_path": "/models/clip-b16",
        "train_dir": "/data/train",
        "image_size": 224,
        "max_train_samples": 100,
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 4,
        "base_learning_rate": 1.5e-4,
        "layer_decay": 0.65,
        "use_cpu": True,
    }
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe))

    model_args, data_args, training_args = parse_args_or_json(args=[str(path)])

    assert isinstance(model_args, ModelArguments) and model_args.model_type == "mvp_vision"
    assert model_args.config_overrides == "hidden_size=64,num_hidden_layers=2"
    assert model_args.teacher_name_or_path == "/models/clip-b16"
    assert isinstance(data_args, DataArguments) and data_args.train_dir == "/data/train"
    assert data_args.image_size == 224 and data_args.max_train_samples == 100
    assert isinstance(training_args, PretrainingArguments)
    assert training_args.layer_decay == 0.65
    # 1.5e-4 x (8 per device x 1 process x 4 accumulation) / 256
    assert training_args.learning_rate == pytest.approx(1.5e-4 * 32 / 256)


def test_unknown_recipe_key_is_an_error(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps({"output_dir": str(tmp_path), "base_lerning_rate": 1e-3}))
    with pytest.raises(ValueError, match="base_lerning_rate"):
        parse_args_or_json(args=[str(path)])


def test_missing_recipe_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        parse_args_or_json(args=[str(tmp_path / "nope.json")])


def test_command_line_and_pretraining_defaults(tmp_path):
    _, data_args, training_args = parse_args_or_json(
        args=["--output_dir", str(tmp_path), "--learning_rate", "3e-4", "--dataset_name", "cifar10", "--use_cpu"]
    )

    assert data_args.dataset_name == "cifar10" and data_args.train_val_split == 0.15
    assert training_args.learning_rate == 3e-4  # no base_learning_rate: left as given
    assert training_args.remove_unused_columns is False
    assert training_args.label_names == ["pixel_values"]
    assert training_args.prediction_loss_only is True
    assert training_args.layer_decay is None
    assert data_args.loading_kwargs(seed=3, cache_dir="/c") == {
        "dataset_name": "cifar10",
        "dataset_config_name": None,
        "train_dir": None,
        "validation_dir": None,
        "streaming": False,
        "image_column_name": None,
        "cache_dir": "/c",
        "max_train_samples": None,
        "max_eval_samples": None,
        "train_val_split": 0.15,
        "seed": 3,
        "embedded_num_images": 256,
    }


def test_base_learning_rate_overrides_learning_rate(tmp_path):
    args = PretrainingArguments(
        output_dir=str(tmp_path),
        learning_rate=1.0,
        base_learning_rate=1e-3,
        per_device_train_batch_size=64,
        use_cpu=True,
    )
    assert args.total_train_batch_size == 64
    assert args.learning_rate == pytest.approx(2.5e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"layer_decay": 0.0}, "layer_decay"),
        ({"layer_decay": 1.5}, "layer_decay"),
        ({"base_learning_rate": -1.0}, "base_learning_rate"),
    ],
)
def test_bad_training_values(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        PretrainingArguments(output_dir=str(tmp_path), use_cpu=True, **kwargs)


def test_bad_model_and_data_combinations():
    with pytest.raises(ValueError, match="config_overrides"):
        ModelArguments(model_name_or_path="/ckpt", config_overrides="hidden_size=8")
    with pytest.raises(ValueError, match="not both"):
        DataArguments(dataset_name="cifar10", train_dir="/data")
    with pytest.raises(ValueError, match="train_val_split"):
        DataArguments(train_val_split=1.0)


@pytest.mark.parametrize("name", ["image_size", "max_train_samples", "max_eval_samples", "embedded_num_images"])
def test_data_sizes_below_one_name_the_flag(name):
    with pytest.raises(ValueError, match=f"--{name} must be at least 1 .*got 0"):
        DataArguments(**{name: 0})
    assert getattr(DataArguments(**{name: 3}), name) == 3


def test_help_texts_state_what_the_code_does():
    import dataclasses

    from hf_unified_pretrain.training import ModelArguments, build_parameter_groups
    from tests.training.toy_models import ToyPretrainingConfig, ToyPretrainingModel

    helps = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(PretrainingArguments)}
    assert "layer_decay ** (L - 1 - i)" in helps["layer_decay"]
    model = ToyPretrainingModel(ToyPretrainingConfig(num_hidden_layers=2))  # L = 4 ids: embed, 2 blocks, head
    scales = {group["layer_id"]: group["lr_scale"] for group in build_parameter_groups(model, 1.0, 0.0, 0.5)}
    assert scales == {0: 0.5**3, 1: 0.5**2, 2: 0.5, 3: 1.0}  # the help's formula, head at the full rate
    overrides_help = {f.name: f.metadata["help"] for f in dataclasses.fields(ModelArguments)}["config_overrides"]
    assert "update_from_string" not in overrides_help and "'none' sets None" in overrides_help
