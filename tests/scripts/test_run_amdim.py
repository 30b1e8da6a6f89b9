"""training_scripts/run_amdim.py end to end: outputs, Auto loading, loss parts and online-classifier accuracy, resume,
2-process accelerate launch (negatives gathered across processes)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, AutoModelForPreTraining

import hf_unified_pretrain  # noqa: F401
from hf_unified_pretrain.training import PretrainingTrainer
from tests.conftest import shared_path
from tests.scripts.conftest import SMOKE_TRAIN_ARGS, launch_two_processes, load_script

LOSS_PARTS = ("loss_g2l_1t5", "loss_g2l_1t7", "loss_g2l_5t5", "loss_lgt_reg")


def _args(output_dir, *extra):
    return ["--preset", "tiny", "--output_dir", str(output_dir), *SMOKE_TRAIN_ARGS, *extra]


def test_run_amdim_writes_a_loadable_checkpoint_and_logs_every_loss_part(tmp_path):
    metrics = load_script("run_amdim")["main"](
        _args(tmp_path, "--max_steps", "3", "--do_eval", "--per_device_eval_batch_size", "4")
    )
    assert metrics["train_loss"] > 0 and "eval_loss_g2l_5t5" in metrics
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "loss_curve.png", "README.md"):
        assert (tmp_path / name).exists(), name
    model = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert type(model).__name__ == "AMDIMForPreTraining"
    encoder = AutoModel.from_pretrained(tmp_path)
    assert type(encoder).__name__ == "AMDIMModel"
    torch.testing.assert_close(encoder.encoder.layers[0].conv.weight, model.amdim.encoder.layers[0].conv.weight)
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    steps = [entry for entry in history if "loss" in entry]
    assert len(steps) == 3 and all(part in entry for entry in steps for part in LOSS_PARTS)
    # no labels in the embedded photographs: the online classifiers are not trained
    assert not any("train_accuracy_mlp" in entry for entry in history)
    assert "AMDIM" in (tmp_path / "README.md").read_text()


@pytest.mark.shared_data
def test_run_amdim_on_cifar10_trains_the_online_classifiers_and_logs_accuracy(tmp_path):
    root = shared_path("data")
    metrics = load_script("run_amdim")["main"](
        _args(tmp_path, "--max_steps", "2", "--cifar10_root", str(root), "--max_train_samples", "16")
    )
    assert metrics["train_loss"] > 0
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "loss" in entry]
    for entry in logged:
        assert 0.0 <= entry["train_accuracy_mlp"] <= 1.0 and 0.0 <= entry["train_accuracy_linear"] <= 1.0
        assert entry["loss_cls_mlp"] > 0 and entry["loss_cls_linear"] > 0


def test_run_amdim_resumes_after_interruption(tmp_path, monkeypatch):
    main = load_script("run_amdim")["main"]
    original_step = PretrainingTrainer.training_step
    calls = {"count": 0}

    def crash_after_three_steps(self, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] > 3:
            raise KeyboardInterrupt("simulated interruption")
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(PretrainingTrainer, "training_step", crash_after_three_steps)
    with pytest.raises(KeyboardInterrupt):
        main(_args(tmp_path, "--max_steps", "6"))
    assert (tmp_path / "checkpoint-2").is_dir() and not (tmp_path / "checkpoint-4").exists()

    calls["count"] = -100  # no more crashes; count the steps the second run really takes
    main(_args(tmp_path, "--max_steps", "6"))
    assert calls["count"] == -100 + 4  # resumed at step 2: only steps 3..6 ran
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4, 5, 6]


def test_run_amdim_under_accelerate_launch_with_two_processes(tmp_path):
    # On machines without GPUs, accelerate forms a gloo process group only when the script runs with --use_cpu.
    completed = launch_two_processes("run_amdim", _args(tmp_path, "--max_steps", "2", "--use_cpu"))
    assert completed.returncode == 0, completed.stderr[-4000:]
    log = completed.stdout + completed.stderr
    assert "Process rank: 1" in log and "distributed training: True" in log
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    # 2 processes x 4 images per step: one epoch of the 20 training crops takes 3 steps, so 2 steps cover 16 images.
    assert state["log_history"][-1]["epoch"] == pytest.approx(2 / 3, abs=1e-3)
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert type(reloaded).__name__ == "AMDIMForPreTraining"
    assert all(torch.isfinite(p).all() for p in reloaded.parameters())
