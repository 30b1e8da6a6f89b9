"""training_scripts/run_itpn.py and the quickstart main job end to end on the embedded photographs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel, AutoModelForPreTraining

import hf_unified_pretrain  # noqa: F401
from tests.scripts.conftest import SMOKE_TRAIN_ARGS, assert_drawn_png, launch_two_processes, load_script


@pytest.fixture(scope="module")
def clip_teacher_2x2(tmp_path_factory):
    """A random CLIP vision tower with a 2x2 patch grid at 32 px and a 16-d projection (itpn-tiny-test's teacher)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = tmp_path_factory.mktemp("clip_2x2")
    CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=16,
            projection_dim=16,
        )
    ).save_pretrained(folder)
    return folder


def test_quickstart_main_job_writes_checkpoint_curve_and_reconstruction(tmp_path, capsys):
    load_script("run_quickstart")["main"](
        [
            "--output_dir",
            str(tmp_path),
            "--max_steps",
            "4",
            "--eval_steps",
            "2",
            "--save_steps",
            "2",
            "--logging_steps",
            "1",
            "--embedded_num_images",
            "48",
        ]
    )
    printed = capsys.readouterr().out
    for name in ("model.safetensors", "loss_curve.png", "reconstruction.png", "README.md"):
        assert str(tmp_path / name) in printed
    assert_drawn_png(tmp_path / "loss_curve.png")
    assert_drawn_png(tmp_path / "reconstruction.png")
    assert "(missing!)" not in printed
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "itpn" and config["num_hidden_layers"] == 4
    assert type(AutoModel.from_pretrained(tmp_path)).__name__ == "ITPNModel"


def test_run_itpn_clip_target_keeps_teacher_out_of_checkpoint(tmp_path, clip_teacher_2x2):
    load_script("run_itpn")["main"](
        [
            "--preset",
            "itpn-tiny-test",
            "--config_overrides",
            "pretraining_target=clip,use_relative_position_bias=true",
            "--teacher_name_or_path",
            str(clip_teacher_2x2),
            "--output_dir",
            str(tmp_path),
            "--max_steps",
            "2",
            *SMOKE_TRAIN_ARGS,
        ]
    )
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert any(key.startswith("feature_head") for key in keys) and not any("vision_model" in key for key in keys)
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    assert {"loss_clip", "loss_clip_aux"} <= set(history[0])
    assert_drawn_png(tmp_path / "reconstruction.png")
    model = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert model.config.pretraining_target == "clip" and model.teacher is None


def test_run_itpn_mfm_with_ema_teacher_saves_and_resumes_its_state(tmp_path):
    main = load_script("run_itpn")["main"]
    args = [
        "--preset",
        "itpn-tiny-test",
        "--config_overrides",
        "mfm_target=ema",
        "--output_dir",
        str(tmp_path),
        *SMOKE_TRAIN_ARGS,
    ]
    main([*args, "--max_steps", "2"])
    with safe_open(str(tmp_path / "checkpoint-2" / "ema_teacher.safetensors"), "pt") as ema_weights:
        ema_keys = set(ema_weights.keys())
        ema_patch = ema_weights.get_tensor("embeddings.patch_embeddings.projection.weight")
    student = AutoModelForPreTraining.from_pretrained(tmp_path / "checkpoint-2").itpn.state_dict()
    assert ema_keys == set(student)  # the EMA teacher mirrors the student's encoder ...
    assert torch.isfinite(ema_patch).all()
    assert not torch.equal(ema_patch, student["embeddings.patch_embeddings.projection.weight"])  # ... lagging it
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    assert {"loss_pixel", "loss_mfm_stride4", "loss_mfm_stride8", "loss_mfm_stride16"} <= set(history[0])
    main([*args, "--max_steps", "4"])  # resumes from checkpoint-2, EMA restored from it
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and (tmp_path / "checkpoint-4" / "ema_teacher.safetensors").exists()
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as weights:
        assert not any("ema" in key or "teacher" in key for key in weights.keys())  # noqa: SIM118 (safe_open has no __iter__)


def test_run_itpn_under_accelerate_launch_with_two_processes(tmp_path):
    completed = launch_two_processes(
        "run_itpn",
        [
            "--preset",
            "itpn-tiny-test",
            "--output_dir",
            str(tmp_path),
            "--max_steps",
            "2",
            "--use_cpu",
            *SMOKE_TRAIN_ARGS,
        ],
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "Process rank: 1" in completed.stdout + completed.stderr
    assert json.loads((tmp_path / "trainer_state.json").read_text())["global_step"] == 2
    assert type(AutoModelForPreTraining.from_pretrained(tmp_path)).__name__ == "ITPNForPreTraining"
