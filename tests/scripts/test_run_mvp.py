"""training_scripts/run_mvp.py end to end on the embedded photographs: outputs, Auto loading, resume, accelerate."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoImageProcessor, AutoModel, AutoModelForPreTraining

import hf_unified_pretrain  # noqa: F401
from hf_unified_pretrain.training import PretrainingTrainer
from tests.scripts.conftest import SMOKE_TRAIN_ARGS, assert_drawn_png, launch_two_processes, load_script


def _args(output_dir, teacher, *extra):
    return [
        "--preset",
        "tiny",
        "--teacher_name_or_path",
        str(teacher),
        "--output_dir",
        str(output_dir),
        *SMOKE_TRAIN_ARGS,
        *extra,
    ]


def test_run_mvp_writes_a_loadable_teacher_free_checkpoint(tmp_path, tiny_clip_teacher):
    metrics = load_script("run_mvp")["main"](
        _args(tmp_path, tiny_clip_teacher, "--max_steps", "4", "--do_eval", "--per_device_eval_batch_size", "4")
    )
    assert metrics["train_loss"] > 0 and "eval_loss" in metrics
    assert (tmp_path / "checkpoint-4" / "trainer_state.json").is_file()
    assert AutoImageProcessor.from_pretrained(tmp_path).size == {"height": 32, "width": 32}
    assert_drawn_png(tmp_path / "loss_curve.png")
    assert_drawn_png(tmp_path / "reconstruction.png")
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert keys and not any("teacher" in key or "vision_model" in key for key in keys)
    assert json.loads((tmp_path / "config.json").read_text())["teacher_name_or_path"] == str(tiny_clip_teacher)
    model = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert type(model).__name__ == "MVPForPreTraining" and model.teacher is None
    assert type(AutoModel.from_pretrained(tmp_path)).__name__ == "MVPModel"
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    assert [entry["loss_feature"] for entry in history if "loss_feature" in entry]
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\n") and "# MVP" in card
    # the card reports this run: its step count and its final train loss
    assert "| steps | 4 |" in card and f"{metrics['train_loss']:.4g}"[:5] in card


def test_run_mvp_resumes_after_interruption(tmp_path, tiny_clip_teacher, monkeypatch):
    main = load_script("run_mvp")["main"]
    original_step = PretrainingTrainer.training_step
    calls = {"count": 0}

    def crash_after_three_steps(self, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] > 3:
            raise KeyboardInterrupt("simulated interruption")
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(PretrainingTrainer, "training_step", crash_after_three_steps)
    with pytest.raises(KeyboardInterrupt):
        main(_args(tmp_path, tiny_clip_teacher, "--max_steps", "6"))
    assert (tmp_path / "checkpoint-2").is_dir() and not (tmp_path / "checkpoint-4").exists()

    calls["count"] = -100  # no more crashes; count the steps the second run really takes
    main(_args(tmp_path, tiny_clip_teacher, "--max_steps", "6"))
    assert calls["count"] == -100 + 4  # resumed at step 2: only steps 3..6 ran
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4, 5, 6]


def test_run_mvp_missing_teacher_folder_is_a_clear_error(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match="local folder"):
        load_script("run_mvp")["main"](_args(tmp_path / "out", tmp_path / "no_such_clip", "--max_steps", "1"))


def test_run_mvp_under_accelerate_launch_with_two_processes(tmp_path, tiny_clip_teacher):
    # On machines without GPUs, accelerate forms a gloo process group only when the script runs with --use_cpu.
    completed = launch_two_processes("run_mvp", _args(tmp_path, tiny_clip_teacher, "--max_steps", "2", "--use_cpu"))
    assert completed.returncode == 0, completed.stderr[-4000:]
    log = completed.stdout + completed.stderr
    assert "Process rank: 1" in log and "distributed training: True" in log
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    # 2 processes x 4 images per step: one epoch of the 20 training crops takes 3 steps, so 2 steps cover 16 images.
    assert state["log_history"][-1]["epoch"] == pytest.approx(2 / 3, abs=1e-3)
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert all(torch.isfinite(p).all() for p in reloaded.parameters())


def test_multi_process_launch_without_process_group_is_refused(tmp_path, tiny_clip_teacher):
    completed = launch_two_processes("run_mvp", _args(tmp_path, tiny_clip_teacher, "--max_steps", "1"))
    assert completed.returncode != 0
    assert "did not form a process group" in completed.stderr and "--use_cpu" in completed.stderr
