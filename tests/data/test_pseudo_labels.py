"""Pseudo-labelling with tiny randomly initialised in-tree HF models saved to tmp (DPT depth, UperNet and
Mask2Former segmentation): columns, sizes, agreement with the models, batching, resumption, the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset, Features
from datasets import Image as ImageFeature
from PIL import Image
from transformers import (
    ConvNextConfig,
    DPTConfig,
    DPTForDepthEstimation,
    DPTImageProcessor,
    Mask2FormerConfig,
    Mask2FormerForUniversalSegmentation,
    Mask2FormerImageProcessor,
    SegformerImageProcessor,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)

from hf_unified_pretrain.data.multimodal import read_depth, read_segmentation
from hf_unified_pretrain.data.pseudo_labels import pseudo_label_dataset

SIZE = 32


def _rgb_dataset(count: int = 5) -> Dataset:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (24 + 4 * i, 40, 3), dtype=np.uint8)) for i in range(count)]
    return Dataset.from_dict({"image": images}, features=Features({"image": ImageFeature()}))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    dpt = DPTForDepthEstimation(
        DPTConfig(
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=37,
            image_size=SIZE,
            patch_size=8,
            neck_hidden_sizes=[8, 16, 32, 32],
            fusion_hidden_size=16,
            backbone_out_indices=[0, 1, 2, 3],
        )
    )
    dpt.save_pretrained(root / "dpt")
    DPTImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(root / "dpt")
    backbone = ConvNextConfig(
        hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], out_features=["stage1", "stage2", "stage3", "stage4"]
    )
    upernet = UperNetForSemanticSegmentation(
        UperNetConfig(backbone_config=backbone, hidden_size=16, auxiliary_channels=8, num_labels=300)
    )
    upernet.save_pretrained(root / "upernet")
    SegformerImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(root / "upernet")
    m2f = Mask2FormerForUniversalSegmentation(
        Mask2FormerConfig(
            backbone_config=backbone,
            feature_size=32,
            mask_feature_size=32,
            hidden_dim=32,
            encoder_layers=1,
            decoder_layers=2,
            num_queries=4,
            encoder_feedforward_dim=16,
            dim_feedforward=16,
            num_labels=7,
            num_attention_heads=2,
        )
    )
    m2f.save_pretrained(root / "m2f")
    Mask2FormerImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(root / "m2f")
    return root


def test_depth_and_semseg_columns_match_the_models(models, tmp_path):
    dataset = _rgb_dataset()
    out = pseudo_label_dataset(
        dataset, tmp_path / "out", models / "dpt", models / "upernet", batch_size=2, chunk_size=3, progress=False
    )
    assert out.column_names == ["image", "depth", "semseg"] and len(out) == 5
    for row, source in zip(out, dataset):
        depth, labels = read_depth(row["depth"]), read_segmentation(row["semseg"])
        assert depth.shape == labels.shape == (source["image"].height, source["image"].width)
        assert row["depth"].mode == "F" and labels.max() < 300 and row["semseg"].mode.startswith("I")  # 16-bit
    # the stored depth is the model's prediction (resized to the image): check one image by hand
    processor = DPTImageProcessor.from_pretrained(models / "dpt")
    model = DPTForDepthEstimation.from_pretrained(models / "dpt").eval()
    image = dataset[1]["image"]
    with torch.no_grad():
        predicted = model(**processor(images=[image], return_tensors="pt")).predicted_depth[:, None]
    expected = torch.nn.functional.interpolate(predicted, size=(image.height, image.width), mode="bilinear")[0, 0]
    np.testing.assert_allclose(read_depth(out[1]["depth"]), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_mask2former_semseg_and_resuming(models, tmp_path, monkeypatch):
    from hf_unified_pretrain.data import pseudo_labels

    dataset = _rgb_dataset(4)
    first = pseudo_label_dataset(
        dataset, tmp_path / "out", segmentation_model=models / "m2f", chunk_size=2, progress=False
    )
    assert first.column_names == ["image", "semseg"] and read_segmentation(first[0]["semseg"]).max() < 7
    calls = []
    original = pseudo_labels._predict_semseg
    monkeypatch.setattr(pseudo_labels, "_predict_semseg", lambda *a: calls.append(1) or original(*a))
    # simulate an interruption: the second chunk is incomplete
    (tmp_path / "out" / "chunks" / "00001" / pseudo_labels._DONE).unlink()
    again = pseudo_label_dataset(
        dataset, tmp_path / "out", segmentation_model=models / "m2f", chunk_size=2, batch_size=2, progress=False
    )
    assert len(calls) == 1  # only the unfinished chunk (one batch of 2) was recomputed
    for a, b in zip(first, again):
        np.testing.assert_array_equal(read_segmentation(a["semseg"]), read_segmentation(b["semseg"]))


def test_command_line_and_errors(models, tmp_path):
    from hf_unified_pretrain.cli import main

    _rgb_dataset(2).save_to_disk(str(tmp_path / "rgb"))
    main(
        [
            "pseudo-label",
            str(tmp_path / "rgb"),
            "--output_dir",
            str(tmp_path / "out"),
            "--depth_model",
            str(models / "dpt"),
            "--no_progress",
        ]
    )
    from datasets import load_from_disk

    assert load_from_disk(str(tmp_path / "out" / "dataset")).column_names == ["image", "depth"]
    with pytest.raises(ValueError, match="depth_model and/or segmentation_model"):
        pseudo_label_dataset(_rgb_dataset(1), tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="config.json"):
        pseudo_label_dataset(_rgb_dataset(1), tmp_path / "x", depth_model=tmp_path)
    with pytest.raises(KeyError, match="pixels"):
        pseudo_label_dataset(_rgb_dataset(1), tmp_path / "x", depth_model=models / "dpt", image_column="pixels")


def test_no_progress_silences_the_datasets_bars_and_restores_them(models, tmp_path, capsys):
    import datasets

    from hf_unified_pretrain.cli import main

    _rgb_dataset(2).save_to_disk(str(tmp_path / "rgb"))
    capsys.readouterr()
    argv = ["pseudo-label", str(tmp_path / "rgb"), "--depth_model", str(models / "dpt"), "--chunk_size", "1"]
    main([*argv, "--output_dir", str(tmp_path / "quiet"), "--no_progress"])
    quiet = capsys.readouterr()
    assert "Saving the dataset" not in quiet.err and "pseudo-labelling" not in quiet.err
    assert quiet.out.startswith("Wrote 2 rows")
    assert not datasets.are_progress_bars_disabled()  # the user's setting is back
    main([*argv, "--output_dir", str(tmp_path / "loud")])
    assert "Saving the dataset" in capsys.readouterr().err  # the bars this flag silences
