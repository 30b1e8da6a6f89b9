"""Run-script helpers: checkpoint detection/resume, config and model building through the Auto classes, teacher."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForPreTraining, CLIPVisionConfig, CLIPVisionModelWithProjection

from hf_unified_pretrain.teachers import FrozenTeacher, TeacherHolderMixin
from hf_unified_pretrain.training import (
    ModelArguments,
    PretrainingArguments,
    attach_frozen_teacher,
    build_config,
    build_pretraining_model,
    detect_last_checkpoint,
    resolve_resume_checkpoint,
    setup_logging,
)
from hf_unified_pretrain.training.script_utils import apply_config_overrides, checkpoint_problem

from .toy_models import ToyPretrainingConfig, ToyPretrainingModel

AutoConfig.register(ToyPretrainingConfig.model_type, ToyPretrainingConfig, exist_ok=True)
AutoModelForPreTraining.register(ToyPretrainingConfig, ToyPretrainingModel, exist_ok=True)


def _args(output_dir, **kwargs) -> PretrainingArguments:
    return PretrainingArguments(output_dir=str(output_dir), do_train=True, use_cpu=True, report_to="none", **kwargs)


def _checkpoints(output_dir, *steps):
    """Complete checkpoint folders as the Trainer leaves them: weights, optimizer, and trainer_state.json (last)."""
    for step in steps:
        folder = output_dir / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        save_file({"weight": torch.full((3, 2), float(step))}, folder / "model.safetensors")
        torch.save({"state": {}, "param_groups": []}, folder / "optimizer.pt")
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))


def test_resume_picks_newest_checkpoint_automatically(tmp_path, caplog):
    _checkpoints(tmp_path, 2, 10)
    args = _args(tmp_path)

    with caplog.at_level(logging.INFO, logger="hf_unified_pretrain"):
        resolved = resolve_resume_checkpoint(args)

    assert resolved == str(tmp_path / "checkpoint-10")
    assert args.resume_from_checkpoint == resolved
    assert "Checkpoint detected" in caplog.text and "another --output_dir" in caplog.text


def test_resume_explicit_and_last(tmp_path):
    _checkpoints(tmp_path, 2, 4)
    assert resolve_resume_checkpoint(_args(tmp_path, resume_from_checkpoint=str(tmp_path / "checkpoint-2"))) == str(
        tmp_path / "checkpoint-2"
    )
    assert resolve_resume_checkpoint(_args(tmp_path, resume_from_checkpoint="last")) == str(tmp_path / "checkpoint-4")


def test_resume_errors_and_fresh_start(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_resume_checkpoint(_args(tmp_path, resume_from_checkpoint=str(tmp_path / "checkpoint-7")))
    with pytest.raises(FileNotFoundError, match="found no complete checkpoint"):
        resolve_resume_checkpoint(_args(tmp_path, resume_from_checkpoint="last"))
    assert resolve_resume_checkpoint(_args(tmp_path / "new")) is None


def _truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    "damage,named",
    [
        (lambda folder: (folder / "trainer_state.json").unlink(), "trainer_state.json is missing"),
        (lambda folder: (folder / "trainer_state.json").write_text('{"global_st'), "trainer_state.json is not valid"),
        (lambda folder: (folder / "model.safetensors").unlink(), "holds no model weights"),
        (lambda folder: _truncate(folder / "model.safetensors", 0.9), "model.safetensors is truncated"),
        (lambda folder: _truncate(folder / "model.safetensors", 0.01), "model.safetensors"),
        (lambda folder: _truncate(folder / "optimizer.pt"), "optimizer.pt is truncated or corrupt"),
    ],
)
def test_explicit_resume_from_a_broken_checkpoint_names_the_file(tmp_path, damage, named):
    _checkpoints(tmp_path, 3)
    folder = tmp_path / "checkpoint-3"
    assert checkpoint_problem(folder) is None
    damage(folder)
    assert named in checkpoint_problem(folder)
    with pytest.raises(ValueError, match=rf"Cannot resume from .*checkpoint-3: .*{named}.*earlier checkpoint"):
        resolve_resume_checkpoint(_args(tmp_path, resume_from_checkpoint=str(folder)))


def test_automatic_resume_skips_newer_incomplete_checkpoints(tmp_path, caplog):
    _checkpoints(tmp_path, 4, 8, 12)
    (tmp_path / "checkpoint-16").mkdir()  # a save killed right after creating the folder
    (tmp_path / "checkpoint-12" / "trainer_state.json").unlink()  # killed before the state was written
    with caplog.at_level(logging.WARNING, logger="hf_unified_pretrain"):
        assert detect_last_checkpoint(_args(tmp_path)) == str(tmp_path / "checkpoint-8")
    assert "Skipping incomplete checkpoint" in caplog.text and "checkpoint-16" in caplog.text
    assert resolve_resume_checkpoint(_args(tmp_path, resume_from_checkpoint="last")) == str(tmp_path / "checkpoint-8")


def test_resume_last_with_only_incomplete_checkpoints_fails_clearly(tmp_path):
    (tmp_path / "checkpoint-5").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        resolve_resume_checkpoint(_args(tmp_path, resume_from_checkpoint="last"))
    assert resolve_resume_checkpoint(_args(tmp_path)) is None  # automatic: starts from scratch


def test_sharded_checkpoint_with_a_missing_shard_is_incomplete(tmp_path):
    _checkpoints(tmp_path, 2)
    folder = tmp_path / "checkpoint-2"
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"weight": "model-00001-of-00002.safetensors", "bias": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert "model-00002-of-00002.safetensors" in checkpoint_problem(folder)


def test_config_override_errors_name_the_field():
    config = ToyPretrainingConfig()
    with pytest.raises(ValueError, match="--config_overrides hidden_size=abc: invalid value for field 'hidden_size'"):
        apply_config_overrides(config, "hidden_size=abc")
    with pytest.raises(ValueError, match="unknown field 'hiden_size'"):
        apply_config_overrides(config, "hiden_size=4")


def test_config_override_out_of_range_names_the_field_for_both_models():
    from hf_unified_pretrain.models.itpn import ITPNConfig
    from hf_unified_pretrain.models.mvp import MVPConfig

    for config in (MVPConfig.from_preset("tiny"), ITPNConfig()):
        name = type(config).__name__
        with pytest.raises(
            ValueError, match=rf"--config_overrides .*{name}.num_hidden_layers must be at least 1, got 0"
        ):
            apply_config_overrides(config, "num_hidden_layers=0")
    with pytest.raises(ValueError, match=r"ITPNConfig.decoder_num_hidden_layers must be at least 1, got -2"):
        apply_config_overrides(ITPNConfig(), "decoder_num_hidden_layers=-2")
    with pytest.raises(ValueError, match=r"MVPConfig.drop_path_rate must lie in \[0, 1\), got 1.5"):
        apply_config_overrides(MVPConfig.from_preset("tiny"), "drop_path_rate=1.5")


def test_setup_logging_returns_a_configured_logger(tmp_path):
    run_logger = setup_logging(_args(tmp_path), name="run_toy")
    assert run_logger.name == "run_toy" and run_logger.level == logging.INFO


def test_build_config_from_model_type_with_overrides_and_teacher():
    model_args = ModelArguments(
        model_type=ToyPretrainingConfig.model_type,
        config_overrides="hidden_size=6,aux_weight=0.5",
        teacher_name_or_path="/teachers/clip",
    )

    config = build_config(model_args)

    assert isinstance(config, ToyPretrainingConfig)
    assert config.hidden_size == 6 and config.aux_weight == 0.5
    model = build_pretraining_model(model_args, config)
    assert isinstance(model, ToyPretrainingModel) and model.embed.out_features == 6


def test_build_model_from_checkpoint(tmp_path):
    torch.manual_seed(0)
    ToyPretrainingModel(ToyPretrainingConfig(hidden_size=5)).save_pretrained(tmp_path)
    model_args = ModelArguments(model_name_or_path=str(tmp_path))

    model = build_pretraining_model(model_args, build_config(model_args))

    assert model.config.hidden_size == 5
    torch.testing.assert_close(model.embed.weight, ToyPretrainingModel.from_pretrained(tmp_path).embed.weight)


def test_build_config_needs_a_source():
    with pytest.raises(ValueError, match="--model_type"):
        build_config(ModelArguments())


class _TeacherStudent(TeacherHolderMixin, ToyPretrainingModel):
    pass


def test_attach_frozen_teacher(tmp_path):
    CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=16,
            patch_size=8,
            projection_dim=8,
        )
    ).save_pretrained(tmp_path)
    student = _TeacherStudent(ToyPretrainingConfig())
    student.config.image_size, student.config.patch_size = 32, 16

    attach_frozen_teacher(student, ModelArguments(teacher_name_or_path=str(tmp_path)), [0.5] * 3, [0.5] * 3)

    assert isinstance(student.teacher, FrozenTeacher)
    assert student.teacher.grid_size == (2, 2)  # the student's 32 / 16 grid
    assert student._run_teacher(torch.randn(1, 3, 32, 32)).shape == (1, 4, 8)
    with pytest.raises(ValueError, match="set_teacher"):
        attach_frozen_teacher(
            ToyPretrainingModel(ToyPretrainingConfig()),
            ModelArguments(teacher_name_or_path=str(tmp_path)),
            [0.5] * 3,
            [0.5] * 3,
        )
    with pytest.raises(ValueError, match="--teacher_name_or_path"):
        attach_frozen_teacher(_TeacherStudent(ToyPretrainingConfig()), ModelArguments(), [0.5] * 3, [0.5] * 3)


def test_preset_config_applies_overrides_at_construction_so_derived_fields_follow():
    from hf_unified_pretrain.models.m3i import M3IConfig
    from hf_unified_pretrain.training.script_utils import preset_config

    # setting these one by one on a built config would keep the preset's stride (32) and a 1x1 grid
    config = preset_config(M3IConfig, "tiny", "image_size=32,feature_stage=stage3,neg_weight=0.25", num_labels=7)
    assert (config.feature_stride, config.grid_size, config.backbone_config.out_features) == (16, (2, 2), ["stage3"])
    assert config.neg_weight == 0.25 and config.num_labels == 7
    # the recipe's overrides win over the data-driven fields
    assert preset_config(M3IConfig, "tiny", "image_size=96", image_size=32).image_size == 96
    with pytest.raises(ValueError, match="unknown field 'neg_weigth'"):
        preset_config(M3IConfig, "tiny", "neg_weigth=0.1")


def test_end_distributed_tears_down_an_initialised_process_group_and_is_a_no_op_without_one(tmp_path):
    from hf_unified_pretrain.training import end_distributed

    end_distributed()  # nothing initialised: no error
    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    assert torch.distributed.is_initialized()
    end_distributed()
    assert not torch.distributed.is_initialized()
