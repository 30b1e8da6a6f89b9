"""Multi-modal data path: one crop box and flip for every modality, depth kept at its bit depth and masked where
invalid, 16-bit semantic maps, folder / `datasets` sources, the collator's per-modality masks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset, Features
from datasets import Image as ImageFeature
from PIL import Image

from hf_unified_pretrain.data.multimodal import (
    ModalityField,
    MultiModalCollator,
    MultiModalTransform,
    attach_multimodal_transform,
    fields_from_config,
    load_multimodal_folder,
    load_single_modality_folder,
    read_depth,
)
from hf_unified_pretrain.masking import dirichlet_multimodal_mask

FIELDS = [
    ModalityField("rgb", "image"),
    ModalityField("depth", "depth"),
    ModalityField("semseg", "segmentation", stride_level=4, num_classes=400, ignore_index=65535),
]
H, W = 48, 64


def _sample(seed: int = 0) -> dict:
    """Columns encode the x coordinate in every modality, so crops and flips can be traced across them."""
    x = np.tile(np.arange(W), (H, 1))
    rgb = np.stack([x * 4, np.full((H, W), 100), np.tile(np.arange(H)[:, None] * 5, (1, W))], -1).astype(np.uint8)
    depth = (1000 + 900 * x).astype(np.uint16)  # 16-bit values far above 255
    depth[:4, :4] = 0  # no return
    semseg = (x * 6).astype(np.uint16)  # labels up to 378 > 255
    return {"rgb": Image.fromarray(rgb), "depth": Image.fromarray(depth), "semseg": Image.fromarray(semseg)}


def test_depth_and_labels_keep_their_bit_depth_and_invalid_depth_is_masked():
    sample = _sample()
    assert sample["depth"].mode.startswith("I") and read_depth(sample["depth"]).max() == 1000 + 900 * (W - 1)
    transform = MultiModalTransform(FIELDS, (H, W), train=False, standardize_depth_maps=False)
    out = transform(sample)
    depth, valid = out["modalities"]["depth"], out["valid_masks"]["depth"]
    assert depth.dtype == torch.float32 and depth.shape == (1, H, W)
    expected = torch.from_numpy(read_depth(sample["depth"]))
    assert torch.equal(depth[0][valid], expected[valid])  # same size: values are exact 16-bit values
    assert not valid[:4, :4].any() and valid.sum() == H * W - 16 and torch.all(depth[0, :4, :4] == 0)
    semseg = out["modalities"]["semseg"]
    assert semseg.shape == (H // 4, W // 4) and semseg.dtype == torch.long and semseg.max() > 255
    standardized = MultiModalTransform(FIELDS, (H, W), train=False)(sample)["modalities"]["depth"][0]
    kept = torch.sort(expected[valid]).values
    kept = kept[int(0.1 * kept.numel()) : int(0.9 * kept.numel())]
    torch.testing.assert_close(standardized[valid], (expected[valid] - kept.mean()) / torch.sqrt(kept.var() + 1e-6))


def test_one_crop_box_and_flip_for_all_modalities():
    transform = MultiModalTransform(FIELDS, 32, scale=(0.3, 0.6), hflip=0.5, standardize_depth_maps=False, seed=3)
    flips = set()
    for _ in range(8):
        out = transform(_sample())
        rgb = out["modalities"]["rgb"]
        red = rgb[0] * 0.229 + 0.485  # undo the normalisation: x * 4 / 255
        x_from_rgb = red[16] * 255 / 4
        depth = out["modalities"]["depth"][0]
        x_from_depth = (depth[16] - 1000) / 900
        valid = out["valid_masks"]["depth"][16]
        assert torch.allclose(x_from_rgb[valid], x_from_depth[valid], atol=1.0)
        x_from_semseg = out["modalities"]["semseg"][4].float() / 6
        block_centres = x_from_depth.reshape(-1, 4).mean(dim=1)  # depth x at each 4-pixel block of the 1/4 map
        assert torch.allclose(x_from_semseg, block_centres, atol=4.0)
        assert (x_from_semseg[0] > x_from_semseg[-1]) == (x_from_depth[0] > x_from_depth[-1])
        flips.add(bool(x_from_depth[0] > x_from_depth[-1]))
    assert flips == {True, False}  # both orientations happened, always together


def test_folder_layout_and_datasets_columns(tmp_path):
    for index in range(3):
        sample = _sample(index)
        for name, image in sample.items():
            (tmp_path / name).mkdir(exist_ok=True)
            image.save(tmp_path / name / f"img{index}.png")
    dataset = load_multimodal_folder(tmp_path)
    assert dataset.column_names == ["stem", "depth", "rgb", "semseg"] and len(dataset) == 3
    transform = MultiModalTransform(FIELDS, 32, seed=0)
    dataset = attach_multimodal_transform(dataset, transform)
    item = dataset[0]
    assert item["modalities"]["depth"].shape == (1, 32, 32) and item["modalities"]["semseg"].shape == (8, 8)

    features = Features({"image": ImageFeature(), "pseudo_depth": ImageFeature(), "labels": ImageFeature()})
    sample = _sample()
    hub_like = Dataset.from_dict(
        {"image": [sample["rgb"]], "pseudo_depth": [sample["depth"]], "labels": [sample["semseg"]]}, features=features
    )
    columns = {"rgb": "image", "depth": "pseudo_depth", "semseg": "labels"}
    fields = [
        ModalityField(f.name, f.kind, f.stride_level, f.num_classes, f.ignore_index, columns[f.name]) for f in FIELDS
    ]
    out = MultiModalTransform(fields, (H, W), train=False, standardize_depth_maps=False)(hub_like[0])
    assert out["modalities"]["depth"].max() == 1000 + 900 * (W - 1)

    (tmp_path / "rgb" / "extra.png").write_bytes((tmp_path / "rgb" / "img0.png").read_bytes())
    with pytest.raises(ValueError, match="extra"):
        load_multimodal_folder(tmp_path)


def test_plain_image_folder_with_class_sub_folders_is_one_modality(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for index in range(2):
            _sample(index)["rgb"].save(tmp_path / name / f"{index}.png")
    (tmp_path / ".cache").mkdir()
    _sample()["rgb"].save(tmp_path / ".cache" / "hidden.png")
    (tmp_path / "notes.txt").write_text("not an image")
    dataset = load_single_modality_folder(tmp_path, "rgb")
    assert dataset.column_names == ["stem", "rgb"]
    assert dataset["stem"] == ["cat/0", "cat/1", "dog/0", "dog/1"]  # same file stems in two classes stay apart
    item = attach_multimodal_transform(dataset, MultiModalTransform([FIELDS[0]], 32, seed=0))[3]
    assert list(item["modalities"]) == ["rgb"] and item["modalities"]["rgb"].shape == (3, 32, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No image files"):
        load_single_modality_folder(tmp_path / "empty", "rgb")


def test_collator_adds_dirichlet_masks_per_modality_and_splits_targets():
    transform = MultiModalTransform(FIELDS, 32, seed=1)
    examples = [transform(_sample()) for _ in range(4)]

    def generator_factory(num_tokens):
        return lambda batch, generator=None: dirichlet_multimodal_mask(num_tokens, 5, batch, generator=generator)

    collator = MultiModalCollator(
        generator_factory, patch_size=8, input_modalities=["rgb", "depth"], stride_levels={"semseg": 4}, seed=0
    )
    batch = collator(examples)
    assert set(batch["modalities"]) == {"rgb", "depth"} and set(batch["targets"]) == {"semseg"}
    assert batch["valid_masks"]["depth"].shape == (4, 32, 32)
    masks = batch["bool_masked_pos"]
    assert set(masks) == {"rgb", "depth"} and masks["rgb"].shape == (4, 16)
    assert torch.all((~masks["rgb"]).sum(1) + (~masks["depth"]).sum(1) == 5)
    again = MultiModalCollator(
        generator_factory, patch_size=8, input_modalities=["rgb", "depth"], stride_levels={"semseg": 4}, seed=0
    )(examples)
    assert torch.equal(again["bool_masked_pos"]["depth"], masks["depth"])


def test_fields_from_a_multimae_config():
    from hf_unified_pretrain.models.multimae import MultiMAEConfig

    fields = fields_from_config(MultiMAEConfig.from_preset("tiny"), columns={"rgb": "image"})
    assert [(f.name, f.kind, f.stride_level, f.column) for f in fields] == [
        ("rgb", "image", 1, "image"),
        ("depth", "depth", 1, None),
        ("semseg", "segmentation", 4, None),
    ]
    assert fields[2].num_classes == 5 and fields[2].ignore_index == 255


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: {**s, "depth": s["depth"].resize((W // 2, H // 2))}, "different sizes"),
        (lambda s: {**s, "semseg": Image.fromarray(np.full((H, W), 500, np.uint16))}, "outside"),
        (lambda s: {**s, "semseg": s["rgb"]}, "class indices"),
        (lambda s: {**s, "depth": s["rgb"]}, "one channel"),
        (lambda s: {"caption": "no modality"}, "none of the modalities"),
    ],
)
def test_bad_samples_get_clear_errors(change, message):
    transform = MultiModalTransform(FIELDS, 32, seed=0)
    with pytest.raises((ValueError, KeyError), match=message):
        transform(change(_sample()))


def test_nan_depth_arrays_are_masked_not_propagated(tmp_path):
    depth = np.linspace(1.0, 5.0, H * W, dtype=np.float32).reshape(H, W)
    depth[10:20, 10:20] = np.nan
    np.save(tmp_path / "d.npy", depth)
    transform = MultiModalTransform([ModalityField("depth", "depth")], (H, W), train=False)
    out = transform({"depth": str(tmp_path / "d.npy")})
    assert torch.isfinite(out["modalities"]["depth"]).all()
    assert not out["valid_masks"]["depth"][10:20, 10:20].any() and out["valid_masks"]["depth"].sum() == H * W - 100
