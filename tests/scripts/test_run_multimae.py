"""training_scripts/run_multimae.py end to end on tiny COCO (real RGB, semantic maps from the instance masks, pseudo
depth from a tiny random DPT): outputs, Auto loading, the cross-modal picture, resume, 2-process accelerate."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForPreTraining, DPTConfig, DPTForDepthEstimation, DPTImageProcessor

import hf_unified_pretrain  # noqa: F401
from hf_unified_pretrain.training import PretrainingTrainer
from tests.conftest import shared_path
from tests.scripts.conftest import assert_drawn_png, launch_two_processes, load_script


@pytest.fixture(scope="module")
def coco_with_depth(tmp_path_factory):
    """12 tiny-COCO train images + their semantic maps + pseudo depth, saved with save_to_disk."""
    from hf_unified_pretrain.data import load_tiny_coco
    from hf_unified_pretrain.data.pseudo_labels import pseudo_label_dataset

    root = tmp_path_factory.mktemp("coco")
    coco = load_tiny_coco(shared_path("data"), cache_dir=root / "cache", splits=("train",))["train"].select(range(12))
    torch.manual_seed(0)
    dpt = DPTForDepthEstimation(
        DPTConfig(
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=37,
            image_size=32,
            patch_size=8,
            neck_hidden_sizes=[8, 16, 32, 32],
            fusion_hidden_size=16,
            backbone_out_indices=[0, 1, 2, 3],
        )
    )
    dpt.save_pretrained(root / "dpt")
    DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "dpt")
    pseudo_label_dataset(coco, root / "labelled", depth_model=root / "dpt", batch_size=4, progress=False)
    return root / "labelled" / "dataset"


def _args(output_dir, data, *extra):
    return [
        "--preset", "tiny",
        "--dataset_name", str(data),
        "--modality_columns", json.dumps({"rgb": "image", "semseg": "semantic_map", "depth": "depth"}),
        "--num_semseg_classes", "81",
        "--output_dir", str(output_dir),
        "--do_train",
        "--per_device_train_batch_size", "4",
        "--train_val_split", "0.25",
        "--logging_steps", "1",
        "--save_steps", "2",
        "--report_to", "none",
        "--seed", "0",
        *extra,
    ]  # fmt: skip


def _folder_args(output_dir, folder, *extra):
    """Two logged steps of the tiny preset on a plain RGB image folder."""
    return [
        "--preset", "tiny",
        "--train_dir", str(folder),
        "--output_dir", str(output_dir),
        "--do_train",
        "--max_steps", "2",
        "--per_device_train_batch_size", "4",
        "--logging_steps", "1",
        "--report_to", "none",
        "--seed", "0",
        "--model_card", "false",
        *extra,
    ]  # fmt: skip


def test_run_multimae_on_tiny_coco_with_pseudo_depth(tmp_path, coco_with_depth):
    metrics = load_script("run_multimae")["main"](
        _args(tmp_path, coco_with_depth, "--max_steps", "3", "--do_eval", "--per_device_eval_batch_size", "3")
    )
    assert metrics["train_loss"] > 0 and "eval_loss" in metrics
    for part in ("rgb", "norm_rgb", "depth", "semseg"):
        assert f"eval_loss_{part}" in metrics
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    assert [entry["loss_semseg"] for entry in history if "loss_semseg" in entry]
    assert_drawn_png(tmp_path / "cross_modal_predictions.png", min_size=(600, 300))
    model = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert type(model).__name__ == "MultiMAEForPreTraining"
    assert model.config.modality("semseg").num_classes == 81
    assert "MultiMAE" in (tmp_path / "README.md").read_text()


def test_run_multimae_resumes_after_interruption(tmp_path, coco_with_depth, monkeypatch):
    main = load_script("run_multimae")["main"]
    original_step = PretrainingTrainer.training_step
    calls = {"count": 0}

    def crash_after_three_steps(self, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] > 3:
            raise KeyboardInterrupt("simulated interruption")
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(PretrainingTrainer, "training_step", crash_after_three_steps)
    with pytest.raises(KeyboardInterrupt):
        main(_args(tmp_path, coco_with_depth, "--max_steps", "5"))
    assert (tmp_path / "checkpoint-2").is_dir() and not (tmp_path / "checkpoint-4").exists()
    calls["count"] = -100
    main(_args(tmp_path, coco_with_depth, "--max_steps", "5"))
    assert calls["count"] == -100 + 3  # resumed at step 2: steps 3..5
    assert json.loads((tmp_path / "trainer_state.json").read_text())["global_step"] == 5


def test_run_multimae_under_accelerate_launch_with_two_processes(tmp_path, coco_with_depth):
    completed = launch_two_processes(
        "run_multimae",
        _args(tmp_path, coco_with_depth, "--max_steps", "2", "--use_cpu", "--per_device_train_batch_size", "2"),
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    log = completed.stdout + completed.stderr
    assert "Process rank: 1" in log and "distributed training: True" in log
    assert json.loads((tmp_path / "trainer_state.json").read_text())["global_step"] == 2
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert all(torch.isfinite(p).all() for p in reloaded.parameters())
    assert_drawn_png(tmp_path / "cross_modal_predictions.png", min_size=(600, 300))


@pytest.fixture(scope="module")
def rgb_class_folder(tmp_path_factory):
    """A CIFAR-like RGB folder: 2 class sub-folders of 4 random 32 px PNGs each (no modality sub-folders)."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("rgb_folder") / "train"
    generator = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for index in range(4):
            pixels = generator.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}_{index}.png")
    return root


def test_run_multimae_on_a_plain_rgb_image_folder(tmp_path, rgb_class_folder):
    """Class sub-folders are not modalities: the folder is read as RGB only and a new model keeps RGB alone (no
    depth/semseg adapters or decoders computed without data)."""
    metrics = load_script("run_multimae")["main"](_folder_args(tmp_path, rgb_class_folder))
    assert metrics["train_loss"] > 0
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    assert [entry["loss_norm_rgb"] for entry in history if "loss_norm_rgb" in entry]
    model = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert [spec["name"] for spec in model.config.modalities] == ["rgb"]
    assert sorted(model.decoders) == ["norm_rgb", "rgb"] and list(model.multimae.input_adapters) == ["rgb"]


def test_run_multimae_modalities_flag_restricts_a_new_model(tmp_path, coco_with_depth):
    """--modalities rgb,semseg on data that also holds depth: the model has no depth adapter nor decoder."""
    load_script("run_multimae")["main"](
        _args(tmp_path, coco_with_depth, "--max_steps", "1", "--modalities", "rgb,semseg", "--model_card", "false")
    )
    model = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert model.config.input_modalities == ["rgb", "semseg"]
    assert sorted(model.decoders) == ["norm_rgb", "rgb", "semseg"]


def test_run_multimae_output_modalities_none_trains_the_norm_rgb_decoder_alone(tmp_path, rgb_class_folder):
    """--output_modalities none: only MAE's normalised-pixel decoder is built and scored (no raw-RGB decoder)."""
    load_script("run_multimae")["main"](_folder_args(tmp_path, rgb_class_folder, "--output_modalities", "none"))
    logged = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    steps = [entry for entry in logged if "loss_norm_rgb" in entry]
    assert len(steps) == 2 and not any("loss_rgb" in entry for entry in logged)
    for entry in steps:  # the total is the norm_rgb loss alone
        assert float(entry["loss"]) == pytest.approx(float(entry["loss_norm_rgb"]), rel=1e-3)
    model = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert model.config.output_modalities == [] and list(model.decoders) == ["norm_rgb"]


def test_run_multimae_output_modalities_needs_a_decoder_and_a_new_model(tmp_path, rgb_class_folder):
    setup = load_script("run_multimae")["setup"]
    with pytest.raises(ValueError, match="--output_modalities chooses the decoders of a new model"):
        setup(["--model_name_or_path", str(tmp_path), "--output_modalities", "none", "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="leaves the model without any decoder"):
        setup(
            [
                "--preset", "tiny",
                "--train_dir", str(rgb_class_folder),
                "--output_dir", str(tmp_path),
                "--config_overrides", "extra_norm_rgb_output=false",
                "--output_modalities", "none",
            ]
        )  # fmt: skip


def test_run_multimae_modalities_flag_needs_a_new_model(tmp_path):
    with pytest.raises(ValueError, match="--modalities chooses the modalities of a new model"):
        load_script("run_multimae")["setup"](
            ["--model_name_or_path", str(tmp_path), "--modalities", "rgb", "--output_dir", str(tmp_path)]
        )
