"""load_pretraining_dataset and robust decoding: embedded default, folders with broken files, errors, streaming."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, IterableDatasetDict, Value
from datasets import Image as ImageFeature
from torch.utils.data import DataLoader

from hf_unified_pretrain.data import (
    EMBEDDED_SOURCES,
    EmptyImageDatasetError,
    EvalTransform,
    MaskedImageCollator,
    PretrainingTransform,
    attach_transform,
    attach_transforms,
    decode_image,
    load_embedded_dataset,
    load_pretraining_dataset,
    resolve_image_column,
)
from hf_unified_pretrain.data.decoding import UnreadableImageError
from hf_unified_pretrain.masking import RandomMaskGenerator

from .helpers import gradient_image, make_image_folder

# ---------------------------------------------------------------------------------------------------- embedded default


def neighbour_correlation(image: np.ndarray) -> float:
    grey = image.astype(np.float64).mean(axis=-1)
    return float(np.corrcoef(grey[:, :-1].ravel(), grey[:, 1:].ravel())[0, 1])


def test_embedded_default_is_real_deterministic_and_counted():
    dataset = load_embedded_dataset(num_images=48, image_size=64, seed=0)
    assert len(dataset) == 48
    assert dataset["source"][:16] == [name for name in EMBEDDED_SOURCES]
    images = [np.asarray(dataset[i]["image"]) for i in range(len(dataset))]
    assert all(image.shape == (64, 64, 3) and image.dtype == np.uint8 for image in images)
    # Photographs: neighbouring pixels are strongly correlated (white noise would give ~0) and crops are not flat.
    correlations = [neighbour_correlation(image) for image in images]
    assert np.median(correlations) > 0.8 and min(correlations) > 0.1  # textures (brick, grass) are the lowest
    assert min(float(image.std()) for image in images) > 3
    assert len({image.tobytes() for image in images}) == 48

    again = load_embedded_dataset(num_images=48, image_size=64, seed=0)
    assert all(np.array_equal(np.asarray(again[i]["image"]), images[i]) for i in range(48))
    other_seed = load_embedded_dataset(num_images=48, image_size=64, seed=1)
    assert not np.array_equal(np.asarray(other_seed[0]["image"]), images[0])


def test_no_source_gives_the_embedded_default_with_a_validation_split():
    datasets = load_pretraining_dataset(embedded_num_images=40, embedded_image_size=32, train_val_split=0.25)
    assert isinstance(datasets, DatasetDict)
    assert (len(datasets["train"]), len(datasets["validation"])) == (30, 10)
    assert datasets["train"].column_names == ["image", "source"]
    assert datasets["train"][0]["image"].size == (32, 32)
    repeat = load_pretraining_dataset(embedded_num_images=40, embedded_image_size=32, train_val_split=0.25)
    assert repeat["validation"]["source"] == datasets["validation"]["source"]

    subset = load_pretraining_dataset(embedded_num_images=40, embedded_image_size=32, max_train_samples=5)
    assert len(subset["train"]) == 5


# ------------------------------------------------------------------------------------------------------ image folders


def test_image_folder_with_broken_files_is_skipped_and_counted(tmp_path, caplog):
    folder = make_image_folder(tmp_path / "images", per_class=3, broken=True)
    datasets = load_pretraining_dataset(train_dir=str(folder), cache_dir=str(tmp_path / "cache"), train_val_split=None)
    train = datasets["train"]
    assert len(train) == 8  # 6 images + garbage.jpg + truncated.jpg
    assert isinstance(train.features["label"], ClassLabel) and train.features["label"].names == ["cat", "dog"]

    transformed, counter = attach_transforms(datasets, PretrainingTransform(16, seed=0), keep_columns=["label"])
    collator = MaskedImageCollator(RandomMaskGenerator(16, 0.75), label_column="label", seed=0)
    with caplog.at_level(logging.WARNING, logger="hf_unified_pretrain.data.decoding"):
        batches = list(DataLoader(transformed["train"], batch_size=4, collate_fn=collator))
    assert sum(len(batch["pixel_values"]) for batch in batches) == 6
    assert sorted(torch.cat([batch["labels"] for batch in batches]).tolist()) == [0, 0, 0, 1, 1, 1]
    assert counter.count == 2
    skip_warnings = [record for record in caplog.records if "Skipping unreadable image" in record.getMessage()]
    assert len(skip_warnings) == 1  # warned once, the rest counted silently

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_unified_pretrain.data.decoding"):
        assert counter.log_summary() == 2
        assert counter.log_summary() == 2
    assert [record.getMessage() for record in caplog.records] == ["2 unreadable image(s) were skipped."]

    # Indexing the transformed dataset directly yields None for a broken file instead of raising.
    paths = [value["path"] for value in train.cast_column("image", ImageFeature(decode=False))["image"]]
    assert transformed["train"][paths.index(str(folder / "dog" / "garbage.jpg"))]["pixel_values"] is None


def test_skip_count_is_collected_from_dataloader_workers(tmp_path):
    folder = make_image_folder(tmp_path / "images", per_class=2, broken=True)
    datasets = load_pretraining_dataset(train_dir=str(folder), cache_dir=str(tmp_path / "cache"), train_val_split=None)
    transformed, counter = attach_transforms(datasets, PretrainingTransform(8))
    loader = DataLoader(transformed["train"], batch_size=3, collate_fn=MaskedImageCollator(), num_workers=1)
    assert sum(len(batch["pixel_values"]) for batch in loader) == 4
    assert counter.count == 2


def test_train_and_validation_dirs_and_eval_transform(tmp_path):
    train_dir = make_image_folder(tmp_path / "train", per_class=2, broken=False)
    validation_dir = make_image_folder(tmp_path / "val", per_class=1, broken=False)
    datasets = load_pretraining_dataset(
        train_dir=str(train_dir), validation_dir=str(validation_dir), cache_dir=str(tmp_path / "cache")
    )
    assert (len(datasets["train"]), len(datasets["validation"])) == (4, 2)
    teacher = {"teacher_image_mean": (0.5,) * 3, "teacher_image_std": (0.5,) * 3, "teacher_image_size": 12}
    transformed, _ = attach_transforms(
        datasets, PretrainingTransform(16, seed=0, **teacher), EvalTransform(16, **teacher)
    )
    first = transformed["validation"][0]
    assert first["pixel_values"].shape == (3, 16, 16) and first["teacher_pixel_values"].shape == (3, 12, 12)
    # the eval transform is deterministic, the training one is not
    assert torch.equal(transformed["validation"][0]["pixel_values"], first["pixel_values"])


def test_decode_image_accepts_common_values_and_rejects_broken_ones(tmp_path):
    image = gradient_image(10, 12, seed=0)
    path = tmp_path / "x.png"
    image.save(path)
    for value in (
        image,
        str(path),
        path,
        path.read_bytes(),
        {"bytes": path.read_bytes(), "path": None},
        {"bytes": None, "path": str(path)},
        np.asarray(image),
    ):
        decoded = decode_image(value)
        assert decoded.mode == "RGB" and decoded.size == (12, 10)
    for broken in (None, b"junk", {"bytes": None, "path": None}, str(tmp_path / "missing.png"), 3.5):
        with pytest.raises(UnreadableImageError):
            decode_image(broken)


# ------------------------------------------------------------------------------------------------------------- errors


def test_empty_sources_raise_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    (empty / "class_a").mkdir(parents=True)
    (empty / "class_a" / "notes.txt").write_text("no images here")
    with pytest.raises(EmptyImageDatasetError, match=r"train_dir=.*empty.* contains no image files"):
        load_pretraining_dataset(train_dir=str(empty))
    with pytest.raises(ValueError, match=r"Cannot find an image column .* \(columns: \['text'\]\)"):
        load_pretraining_dataset(dataset_name=str(empty))  # `datasets` reads the .txt file as a text dataset
    (tmp_path / "nothing").mkdir()
    with pytest.raises(EmptyImageDatasetError, match=r"dataset '.*nothing' contains no data files"):
        load_pretraining_dataset(dataset_name=str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="is not an existing folder"):
        load_pretraining_dataset(train_dir=str(tmp_path / "missing"))

    saved = tmp_path / "saved_empty"
    Dataset.from_dict({"image": []}, features=Features({"image": ImageFeature()})).save_to_disk(str(saved))
    with pytest.raises(EmptyImageDatasetError, match=r"'train' split of dataset '.*saved_empty' has 0 examples"):
        load_pretraining_dataset(dataset_name=str(saved))
    in_memory = DatasetDict({"train": Dataset.from_dict({"image": []}, features=Features({"image": ImageFeature()}))})
    with pytest.raises(EmptyImageDatasetError, match="'train' split of the given DatasetDict has 0 examples"):
        load_pretraining_dataset(dataset=in_memory)


def saved_dataset(tmp_path, num_rows: int = 6):
    """A `save_to_disk` folder whose images live in a column called `picture`."""
    pictures = []
    for index in range(num_rows):
        path = tmp_path / f"p{index}.png"
        gradient_image(20, 20, seed=index).save(path)
        pictures.append(str(path))
    features = Features({"label": Value("int64"), "caption": Value("string"), "picture": ImageFeature()})
    dataset = Dataset.from_dict(
        {"label": list(range(num_rows)), "caption": ["x"] * num_rows, "picture": pictures}, features=features
    )
    folder = tmp_path / "saved"
    DatasetDict({"train": dataset}).save_to_disk(str(folder))
    return folder


def test_image_column_is_resolved_renamed_or_rejected_clearly(tmp_path):
    folder = saved_dataset(tmp_path)
    datasets = load_pretraining_dataset(dataset_name=str(folder), train_val_split=None)
    assert datasets["train"].column_names == ["label", "caption", "image"]  # first Image feature, renamed
    assert datasets["train"][0]["image"].size == (20, 20)

    columns = r"\['label', 'caption', 'picture'\]"
    with pytest.raises(ValueError, match=r"image_column_name='photo' is not a column .*" + columns):
        load_pretraining_dataset(dataset_name=str(folder), image_column_name="photo")
    with pytest.raises(ValueError, match="Column 'label' .* not images"):
        load_pretraining_dataset(dataset_name=str(folder), image_column_name="label")
    with pytest.raises(ValueError, match="Cannot find an image column"):
        resolve_image_column(["label", "caption"], Features({"label": Value("int64"), "caption": Value("string")}))
    with pytest.raises(ValueError, match=r"Pass only one of .* got \['dataset_name', 'train_dir'\]"):
        load_pretraining_dataset(dataset_name=str(folder), train_dir=str(folder))
    with pytest.raises(KeyError, match="Image column 'image' not found"):
        attach_transform(Dataset.from_dict({"label": [1]}), PretrainingTransform(8))


# ---------------------------------------------------------------------------------------------------------- streaming


def test_streaming_image_folder_yields_transformed_examples(tmp_path):
    folder = make_image_folder(tmp_path / "images", per_class=2, broken=True)
    streamed = load_pretraining_dataset(train_dir=str(folder), streaming=True, max_train_samples=5)
    assert isinstance(streamed, IterableDatasetDict) and list(streamed) == ["train"]
    transformed, counter = attach_transforms(streamed, PretrainingTransform(16, seed=0), keep_columns=["label"])
    examples = list(transformed["train"])
    assert len(examples) == 5
    readable = [example for example in examples if example["pixel_values"] is not None]
    assert all(example["pixel_values"].shape == (3, 16, 16) for example in readable)
    assert counter.count == len(examples) - len(readable)
    batch = MaskedImageCollator(label_column="label")(examples)
    assert batch["pixel_values"].shape == (len(readable), 3, 16, 16)


def test_streaming_in_memory_and_saved_datasets(tmp_path):
    embedded = load_pretraining_dataset(streaming=True, embedded_num_images=6, embedded_image_size=16)
    transformed, _ = attach_transforms(embedded, EvalTransform(8))
    assert [example["pixel_values"].shape for example in transformed["train"]] == [(3, 8, 8)] * 6

    saved = load_pretraining_dataset(dataset_name=str(saved_dataset(tmp_path, num_rows=3)), streaming=True)
    assert [example["image"].size for example in saved["train"]] == [(20, 20)] * 3

    in_memory = Dataset.from_dict(
        {"img": [gradient_image(10, 14, seed=i) for i in range(4)]}, features=Features({"img": ImageFeature()})
    )
    streamed = load_pretraining_dataset(dataset=in_memory, streaming=True)
    assert isinstance(streamed, IterableDatasetDict)
    assert [example["image"].size for example in streamed["train"]] == [(14, 10)] * 4  # `img` renamed to `image`
