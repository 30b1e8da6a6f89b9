"""`hf-unified-pretrain evaluate-probe` end to end on tiny class folders, and the image-folder subset rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hf_unified_pretrain.cli import main
from hf_unified_pretrain.evaluation import list_image_folder
from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNForPreTraining, ITPNImageProcessor

COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def _image_folder(root, per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for index in range(per_class):
            noise = rng.integers(-30, 30, size=(40, 36, 3))
            pixels = np.clip(np.array(colour)[None, None] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("itpn_tiny")
    torch.manual_seed(0)
    ITPNForPreTraining(ITPNConfig.from_preset("itpn-tiny-test")).save_pretrained(folder)
    ITPNImageProcessor().save_pretrained(folder)
    return folder


def test_evaluate_probe_prints_and_writes_json(tmp_path, tiny_checkpoint, capsys):
    train = _image_folder(tmp_path / "train", per_class=6, seed=0)
    evaluation = _image_folder(tmp_path / "eval", per_class=3, seed=1)
    output = tmp_path / "probe.json"
    main([
        "evaluate-probe", str(tiny_checkpoint), "--train_dir", str(train), "--eval_dir", str(evaluation),
        "--k", "5", "--temperature", "0.1", "--linear_probe_epochs", "20", "--batch_size", "4",
        "--max_images", "12", "--intermediate", "--json", str(output),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert "kNN top-1" in captured.out and "pooled" in captured.out
    assert "batch" in captured.err  # tqdm progress bars
    report = json.loads(output.read_text())
    assert (report["num_train_images"], report["num_eval_images"]) == (12, 9)
    assert report["classes"] == ["blue", "green", "red"] and (report["k"], report["temperature"]) == (5, 0.1)
    results = report["results"]
    assert {"pooled", "hidden_states.0", "stage_features.0", "pyramid_features.2"} <= set(results)
    for values in results.values():
        assert set(values) == {"knn_top1", "knn_top5", "linear_top1"}
        assert all(0.0 <= value <= 1.0 for value in values.values())
        assert values["knn_top5"] == 1.0  # only 3 classes
    # Colour classes are easy even for random features: far above chance (1/3).
    assert results["pooled"]["knn_top1"] > 0.6 and results["pooled"]["linear_top1"] > 0.6


def test_evaluate_probe_json_to_stdout_without_probe(tmp_path, tiny_checkpoint, capsys):
    train = _image_folder(tmp_path / "train", per_class=2, seed=0)
    main([
        "evaluate-probe", str(tiny_checkpoint), "--train_dir", str(train), "--eval_dir", str(train),
        "--k", "1", "--linear_probe_epochs", "0", "--json", "-",
    ])  # fmt: skip
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # stdout is the JSON alone: pipeable
    assert "kNN top-1" in captured.err and "kNN top-1" not in captured.out  # the table went to stderr
    # Each image is its own nearest neighbour (k=1): 100 %.
    assert report["results"] == {"pooled": {"knn_top1": 1.0, "knn_top5": 1.0}}


def test_class_balanced_subset_and_unknown_classes(tmp_path):
    root = tmp_path / "images"
    for name, count in (("a", 3), ("b", 1), ("c", 2)):
        (root / name).mkdir(parents=True)
        for index in range(count):
            (root / name / f"{index}.jpg").write_bytes(b"")
        (root / name / "notes.txt").write_text("not an image")
    pairs, names = list_image_folder(root, max_images=5)
    assert names == ["a", "b", "c"]
    assert [(path.parent.name, path.name, label) for path, label in pairs] == [
        ("a", "0.jpg", 0), ("b", "0.jpg", 1), ("c", "0.jpg", 2), ("a", "1.jpg", 0), ("c", "1.jpg", 2),
    ]  # fmt: skip
    with pytest.raises(ValueError, match=r"class folders \['c'\] that are not among"):
        list_image_folder(root, class_names=["a", "b"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class sub-folders"):
        list_image_folder(root / "a")
