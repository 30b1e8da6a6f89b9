"""training_scripts/run_m3i.py end to end on tiny COCO: captions through a tiny random BERT, COCO labels from the
instance-annotation semantic maps, two-image mixing, every loss part logged, Auto loading, backbone export, resume."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForPreTraining, BertConfig, BertModel, BertTokenizerFast

import hf_unified_pretrain  # noqa: F401
from hf_unified_pretrain.models.internimage import InternImageBackbone
from hf_unified_pretrain.teachers import EMA_WEIGHTS_NAME
from hf_unified_pretrain.training import PretrainingTrainer
from tests.conftest import shared_path
from tests.scripts.conftest import load_script

PARTS = ("loss_intra_view", "loss_inter_view", "loss_classification", "loss_image_text")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "man", "dog", "on", "of", "with", "in", "and"]
    (folder / "vocab.txt").write_text("\n".join(words + [chr(c) for c in range(97, 123)]) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=40, hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    BertModel(config).save_pretrained(folder)
    return folder


def _args(output_dir, bert, *extra):
    return ["--preset", "tiny", "--coco_root", str(shared_path("data")), "--label_column", "semantic_map",
            "--caption_column", "captions", "--text_encoder", str(bert), "--output_dir", str(output_dir),
            "--do_train", "--per_device_train_batch_size", "4", "--max_train_samples", "16", "--logging_steps", "1",
            "--save_steps", "2", "--report_to", "none", "--seed", "0", *extra]  # fmt: skip


@pytest.mark.shared_data
def test_run_m3i_on_tiny_coco_logs_every_term_and_exports_the_backbone(tmp_path, tiny_bert):
    metrics = load_script("run_m3i")["main"](_args(tmp_path, tiny_bert, "--max_steps", "2"))
    assert metrics["train_loss"] > 0
    history = json.loads((tmp_path / "trainer_state.json").read_text())["log_history"]
    steps = [entry for entry in history if "loss" in entry]
    assert len(steps) == 2 and all(entry[part] > 0 for entry in steps for part in PARTS)
    model = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert type(model).__name__ == "M3IForPreTraining" and model.config.num_labels == 81
    assert model.config.text_hidden_size == 24
    # neither teacher is in the saved student; the EMA copy is saved beside it
    assert not any(key.startswith(("module.", "model.")) for key in model.state_dict())
    assert (tmp_path / EMA_WEIGHTS_NAME).is_file() and (tmp_path / "checkpoint-2" / EMA_WEIGHTS_NAME).is_file()
    model.save_backbone(tmp_path / "backbone")
    backbone = InternImageBackbone.from_pretrained(tmp_path / "backbone")
    torch.testing.assert_close(backbone.state_dict()["internimage.embeddings.conv1.weight"],
                               model.m3i.backbone.internimage.embeddings.conv1.weight)  # fmt: skip


def test_collator_pairs_mixes_and_picks_one_caption(tiny_bert):
    script = load_script("run_m3i")
    tokenizer = BertTokenizerFast.from_pretrained(tiny_bert)
    collator = script["M3ICollator"](
        (2, 3), 4, 2, label_column="label", num_labels=3, caption_column="captions", tokenizer=tokenizer, seed=0
    )
    examples = [
        {
            "pixel_values": torch.full((3, 8, 12), float(i)),
            "pixel_values_2": torch.zeros(3, 8, 12),
            "relative_geometry": torch.zeros(6),
            "label": i,
            "captions": ["a man", "the dog on a"],
        }
        for i in range(3)
    ]
    batch = collator(examples)
    index, partner = batch["source_index"], batch["mix_partner"]
    assert index.sum(1).tolist() == [2, 2, 2] and partner.tolist() == [1, 2, 0]
    for b in range(3):
        cells = batch["pixel_values"][b, 0, ::4, ::4].flatten()
        expected = torch.where(index[b].bool(), partner[b].float(), float(b))
        assert torch.equal(cells, expected)
        torch.testing.assert_close(batch["labels"][b, b], torch.tensor(4 / 6))
        torch.testing.assert_close(batch["labels"][b, partner[b]], torch.tensor(2 / 6))
    assert torch.equal(batch["target_pixel_values"][:, 0, 0, 0], torch.tensor([0.0, 1.0, 2.0]))
    assert batch["input_ids"].shape[0] == 3 and batch["attention_mask"].shape == batch["input_ids"].shape


def test_relative_geometry_of_crops():
    geometry = load_script("run_m3i")["relative_geometry"]
    # view 2 = right half of view 1 (no flips): offset 0.5 of view 1's width, half the width, same height
    torch.testing.assert_close(geometry((0, 0, 10, 20, False), (0, 10, 10, 10, False)),
                               torch.tensor([0.0, 0.5, 1.0, 0.5, 0.0, 1.0]))  # fmt: skip
    # view 1 mirrored: view 2 (not mirrored) is then the left half of view 1's frame, read right to left
    torch.testing.assert_close(geometry((0, 0, 10, 20, True), (5, 10, 5, 10, False)),
                               torch.tensor([0.5, 0.0, 0.5, 0.5, 1.0, 0.5]))  # fmt: skip


@pytest.mark.shared_data
def test_run_m3i_resumes_after_interruption(tmp_path, tiny_bert, monkeypatch):
    main = load_script("run_m3i")["main"]
    original_step = PretrainingTrainer.training_step
    calls = {"count": 0}

    def crash_after_three_steps(self, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] > 3:
            raise KeyboardInterrupt("simulated interruption")
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(PretrainingTrainer, "training_step", crash_after_three_steps)
    with pytest.raises(KeyboardInterrupt):
        main(_args(tmp_path, tiny_bert, "--max_steps", "4"))
    assert (tmp_path / "checkpoint-2" / EMA_WEIGHTS_NAME).is_file()
    calls["count"] = -100
    main(_args(tmp_path, tiny_bert, "--max_steps", "4"))
    assert calls["count"] == -100 + 2
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def _start_of_run(output_dir, seed):
    args = ["--preset", "tiny", "--output_dir", str(output_dir), "--seed", str(seed), "--do_train",
            "--per_device_train_batch_size", "4", "--embedded_num_images", "8", "--report_to", "none"]  # fmt: skip
    trainer = load_script("run_m3i")["setup"](args).trainer
    weights = {name: value.detach().clone() for name, value in trainer.model.state_dict().items()}
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model.train(), batch)
    return weights, batch, loss


def test_the_seed_fixes_initial_weights_first_batch_and_loss_without_labels_or_captions(tmp_path):
    weights, batch, loss = _start_of_run(tmp_path / "a", 3)
    again_weights, again_batch, again_loss = _start_of_run(tmp_path / "b", 3)
    for name, value in weights.items():
        assert torch.equal(again_weights[name], value), name
    for key, value in batch.items():
        assert torch.equal(again_batch[key], value), key
    assert loss.item() == again_loss.item() and torch.isfinite(loss)
    assert {"labels", "input_ids"}.isdisjoint(batch) and "source_index" in batch


def test_help_opens_with_the_docstring_and_presets(capsys):
    with pytest.raises(SystemExit):
        load_script("run_m3i")["main"](["--help"])
    text = capsys.readouterr().out
    assert "Pre-train M3I" in text and "tiny-vit" in text and "--caption_column" in text


def test_run_m3i_under_accelerate_launch_with_two_processes(tmp_path):
    import os
    import subprocess
    import sys

    from tests.scripts.conftest import SCRIPTS

    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(SCRIPTS / "run_m3i.py"), "--preset", "tiny", "--output_dir", str(tmp_path), "--do_train",
               "--per_device_train_batch_size", "4", "--embedded_num_images", "16", "--max_steps", "2",
               "--report_to", "none", "--seed", "0", "--use_cpu"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=900)
    assert completed.returncode == 0, completed.stderr[-4000:]
    log = completed.stdout + completed.stderr
    assert "Process rank: 1" in log and "distributed training: True" in log
    state = json.loads((tmp_path / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    reloaded = AutoModelForPreTraining.from_pretrained(tmp_path)
    assert type(reloaded).__name__ == "M3IForPreTraining"
    assert all(torch.isfinite(p).all() for p in reloaded.parameters())
    assert (tmp_path / EMA_WEIGHTS_NAME).is_file()


def test_labels_come_from_the_class_folders_and_config_overrides_reach_the_model(tmp_path):
    # The CIFAR-10 learning recipes: an image folder with one sub-folder per class, `label` as the label column.
    from PIL import Image

    colours = {"cat": (230, 20, 20), "dog": (20, 20, 230)}  # alphabetical: cat = 0, dog = 1
    for name, colour in colours.items():
        (tmp_path / "train" / name).mkdir(parents=True)
        for index in range(4):
            Image.new("RGB", (32, 32), colour).save(tmp_path / "train" / name / f"{index}.png")
    recipe = {
        "preset": "tiny", "train_dir": str(tmp_path / "train"), "train_val_split": None, "label_column": "label",
        "num_labels": 2, "num_mixed_cells": 0, "config_overrides": "inter_view_loss_weight=0,neg_weight=0.1",
        "output_dir": str(tmp_path / "out"), "do_train": True, "per_device_train_batch_size": 8, "seed": 0,
        "report_to": "none",
    }  # fmt: skip
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    trainer = load_script("run_m3i")["setup"]([str(tmp_path / "recipe.json")]).trainer
    config = trainer.model.config
    assert (config.inter_view_loss_weight, config.neg_weight, config.num_labels) == (0, 0.1, 2)
    assert config.intra_view_loss_weight == 1 and config.classification_loss_weight == 1
    batch = next(iter(trainer.get_train_dataloader()))
    red = batch["pixel_values"][:, 0].mean(dim=(1, 2)) > batch["pixel_values"][:, 2].mean(dim=(1, 2))
    assert batch["labels"].shape == (8, 2) and torch.equal(batch["labels"].sum(1), torch.ones(8))
    assert torch.equal(batch["labels"].argmax(1), (~red).long()) and red.sum() == 4
    with torch.no_grad():
        losses = trainer.model.train()(**batch).losses
    assert set(losses) == {"intra_view", "classification"}


def test_config_overrides_of_stage_and_size_rederive_stride_grid_and_backbone_output(tmp_path):
    # 32 px with stage 3 (stride 16): the preset's last stage would leave a single 1x1 cell at 32 px.
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / "train" / name).mkdir(parents=True)
        for index in range(4):
            Image.new("RGB", (40, 40), (30 * index, 90, 200)).save(tmp_path / "train" / name / f"{index}.png")
    recipe = {
        "preset": "tiny", "train_dir": str(tmp_path / "train"), "train_val_split": None, "label_column": "label",
        "num_labels": 2, "config_overrides": "feature_stage=stage3,image_size=32,neg_weight=0.1",
        "output_dir": str(tmp_path / "out"), "do_train": True, "per_device_train_batch_size": 4, "seed": 0,
        "report_to": "none",
    }  # fmt: skip
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    trainer = load_script("run_m3i")["setup"]([str(tmp_path / "recipe.json")]).trainer
    config = trainer.model.config
    assert (config.image_size, config.feature_stride, config.grid_size, config.neg_weight) == (32, 16, (2, 2), 0.1)
    assert config.backbone_config.out_features == ["stage3"] and config.num_labels == 2
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["pixel_values"].shape == (4, 3, 32, 32)
    with torch.no_grad():
        outputs = trainer.model.train()(**batch)
    assert outputs.logits.shape == (4, 2) and torch.isfinite(outputs.loss)
    assert set(outputs.losses) == {"intra_view", "inter_view", "classification"}


def test_photometric_augmentation_per_view_is_optional_and_leaves_geometry_alone():
    from PIL import Image

    script = load_script("run_m3i")
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.3])
    image = Image.new("RGB", (40, 40), (200, 60, 30))
    colour = torch.tensor([200, 60, 30]) / 255

    def pixels(view):  # back to [0, 1] RGB
        return view * std[:, None, None] + mean[:, None, None]

    plain = script["M3ITransform"](16, mean.tolist(), std.tolist(), seed=0)(image)
    for key in ("pixel_values", "pixel_values_2"):  # no photometric change by default: the colour survives
        torch.testing.assert_close(pixels(plain[key]), colour[:, None, None].expand(3, 16, 16), atol=2e-3, rtol=0)
    gray = script["M3ITransform"](16, mean.tolist(), std.tolist(), seed=0, grayscale_probability=1.0)(image)
    for key in ("pixel_values", "pixel_values_2"):
        rgb = pixels(gray[key])
        torch.testing.assert_close(rgb[0], rgb[1], atol=2e-3, rtol=0)
        torch.testing.assert_close(rgb[1], rgb[2], atol=2e-3, rtol=0)
    jittered = script["M3ITransform"](16, mean.tolist(), std.tolist(), seed=0, color_jitter_probability=1.0)(image)
    first, second = (pixels(jittered[key]).mean(dim=(1, 2)) for key in ("pixel_values", "pixel_values_2"))
    assert (first - colour).abs().max() > 0.02 and (first - second).abs().max() > 0.02  # each view its own jitter
    # the relative geometry still describes the crops: a uniform image's views are whole-image crops at scale 1
    whole = script["M3ITransform"](16, mean.tolist(), std.tolist(), crop_min_scale=1.0, seed=0,
                                   color_jitter_probability=1.0, grayscale_probability=0.5)(image)  # fmt: skip
    torch.testing.assert_close(whole["relative_geometry"][:4], torch.tensor([0.0, 0.0, 1.0, 1.0]))


def test_photometric_probabilities_are_checked():
    with pytest.raises(ValueError, match="color_jitter_probability must be in"):
        load_script("run_m3i")["M3IArguments"](color_jitter_probability=1.5)


@pytest.mark.parametrize("flip_1", [False, True])
@pytest.mark.parametrize("flip_2", [False, True])
def test_query_geometry_puts_each_view_2_cell_where_it_lies_in_view_1(flip_1, flip_2):
    """End to end from crop boxes to the predictor's query positions: the centre of every cell of view 2, found in
    the source image and expressed in view 1's (possibly mirrored) cell grid, is the position the embedding encodes."""
    from hf_unified_pretrain.models.m3i import relative_position_embedding

    geometry = load_script("run_m3i")["relative_geometry"]
    grid, dim = (4, 3), 64  # non-square cell grid
    box_1 = (10.0, 20.0, 40.0, 50.0, flip_1)  # top, left, height, width, flipped
    box_2 = (30.0, 5.0, 60.0, 30.0, flip_2)  # overlaps view 1 partly, other scale and aspect
    embedding = relative_position_embedding(geometry(box_1, box_2)[None], grid, dim)[0]
    # the positions come back from one sin/cos pair whose frequency keeps every angle inside (-pi, pi)
    quarter, k = dim // 4, 4
    omega = 1.0 / 10000 ** (k / quarter)
    rows = torch.atan2(embedding[:, k], embedding[:, quarter + k]) / omega
    cols = torch.atan2(embedding[:, 2 * quarter + k], embedding[:, 3 * quarter + k]) / omega
    top_1, left_1, height_1, width_1, _ = box_1
    top_2, left_2, height_2, width_2, _ = box_2
    expected_rows, expected_cols = [], []
    for row in range(grid[0]):
        for col in range(grid[1]):
            y = top_2 + (row + 0.5) / grid[0] * height_2
            along = (col + 0.5) / grid[1] * width_2
            x = left_2 + width_2 - along if flip_2 else left_2 + along
            expected_rows.append((y - top_1) / height_1 * grid[0] - 0.5)
            in_view_1 = (left_1 + width_1 - x) if flip_1 else (x - left_1)
            expected_cols.append(in_view_1 / width_1 * grid[1] - 0.5)
    torch.testing.assert_close(rows, torch.tensor(expected_rows), atol=1e-3, rtol=0)
    torch.testing.assert_close(cols, torch.tensor(expected_cols), atol=1e-3, rtol=0)
