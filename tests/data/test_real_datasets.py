"""Real-data loaders: atomic cached extraction, CIFAR-10 JPEG and tiny COCO (captions, rasterised semantic maps).

The CIFAR-10 / tiny COCO tests need `../shared/data` (skipped when absent, failing when CI=true); they extract into
`<repo>/.cache/data` once, which later runs reuse.
"""

from __future__ import annotations

import io
import tarfile
from collections import Counter

import numpy as np
import pytest

from hf_unified_pretrain.data import (
    CIFAR10_CLASSES,
    COCO_IGNORE_INDEX,
    EvalTransform,
    attach_transforms,
    coco_category_to_label,
    decode_uncompressed_rle,
    extract_archive,
    load_cifar10_jpeg,
    load_pretraining_dataset,
    load_tiny_coco,
    rasterize_coco_semantic_map,
    tiny_coco_id2label,
)
from tests.conftest import REPO_ROOT, shared_path

CACHE_DIR = REPO_ROOT / ".cache" / "data"


def make_archive(path, files: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# ------------------------------------------------------------------------------------------------------- extraction


def test_extraction_is_cached_and_atomic(tmp_path, monkeypatch):
    archive = make_archive(tmp_path / "toy.tar.gz", {"toy/a.txt": b"alpha", "toy/sub/b.txt": b"beta"})
    cache = tmp_path / "cache"
    target = extract_archive(archive, cache)
    assert target == cache / "toy"
    assert (target / "toy" / "sub" / "b.txt").read_bytes() == b"beta"
    assert sorted(path.name for path in cache.iterdir()) == ["toy"]  # no staging folder left behind

    def fail(*args, **kwargs):
        raise AssertionError("the archive was opened again")

    monkeypatch.setattr(tarfile, "open", fail)
    assert extract_archive(archive, cache) == target  # cached: the archive is not read again
    monkeypatch.undo()

    # A failure half-way leaves neither a target nor a staging folder.
    broken_cache = tmp_path / "broken_cache"

    def explode(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tarfile.TarFile, "extractall", explode)
    with pytest.raises(OSError, match="disk full"):
        extract_archive(archive, broken_cache)
    assert list(broken_cache.iterdir()) == []
    monkeypatch.undo()

    # A folder the loader did not make is not trusted.
    (tmp_path / "foreign" / "toy").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="not a complete extraction"):
        extract_archive(archive, tmp_path / "foreign")


def test_archive_member_escaping_the_folder_is_refused(tmp_path):
    archive = make_archive(tmp_path / "evil.tar.gz", {"../escape.txt": b"x"})
    with pytest.raises(tarfile.TarError):
        extract_archive(archive, tmp_path / "cache")
    assert not (tmp_path / "escape.txt").exists()


# -------------------------------------------------------------------------------------------------- COCO rasterising


def test_uncompressed_rle_is_column_major():
    # 3 x 2 mask, column-major runs: 1 zero, 3 ones, 2 zeros -> column 0 = [0, 1, 1], column 1 = [1, 0, 0]
    mask = decode_uncompressed_rle([1, 3, 2], height=3, width=2)
    assert mask.tolist() == [[False, True], [True, False], [True, False]]
    with pytest.raises(ValueError, match="cover 5 pixels"):
        decode_uncompressed_rle([1, 4], height=3, width=2)


def test_semantic_map_labels_draw_order_and_crowd():
    categories = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 90, "name": "toothbrush"}]
    mapping = coco_category_to_label(categories)
    assert mapping == {1: 1, 18: 2, 90: 3}
    crowd = {"counts": [10 * 10 - 3, 3], "size": [10, 10]}  # column-major: last column, rows 7-9
    annotations = [
        # the small square is drawn on top of the large one although it comes first
        {"id": 1, "category_id": 90, "iscrowd": 0, "area": 4.0, "segmentation": [[3, 3, 5, 3, 5, 5, 3, 5]]},
        {"id": 2, "category_id": 18, "iscrowd": 0, "area": 36.0, "segmentation": [[1, 1, 7, 1, 7, 7, 1, 7]]},
        {"id": 3, "category_id": 1, "iscrowd": 1, "area": 3.0, "segmentation": crowd},
    ]
    semantic = rasterize_coco_semantic_map(annotations, height=10, width=10, category_to_label=mapping)
    assert semantic.dtype == np.uint8 and semantic.shape == (10, 10)
    assert semantic[0, 0] == 0 and semantic[8, 8] == 0 and semantic[6, 9] == 0  # background
    assert semantic[2, 2] == 2 and semantic[7, 7] == 2  # dog, polygon edges included
    assert semantic[4, 4] == 3  # toothbrush on top of the dog
    assert semantic[7:, 9].tolist() == [COCO_IGNORE_INDEX] * 3  # crowd
    assert np.count_nonzero(semantic == 3) == 9 and np.count_nonzero(semantic == 2) == 49 - 9


# ---------------------------------------------------------------------------------------------------------- CIFAR-10


def test_cifar10_jpeg_counts_labels_and_images():
    datasets = load_cifar10_jpeg(shared_path("data"), CACHE_DIR)
    assert {split: len(data) for split, data in datasets.items()} == {"train": 50000, "test": 10000}
    test = datasets["test"]
    assert test.features["label"].names == list(CIFAR10_CLASSES)
    assert Counter(test["label"]) == {label: 1000 for label in range(10)}
    assert Counter(datasets["train"]["label"]) == {label: 5000 for label in range(10)}
    # rows are sorted by class then file name: row 3000 is test/cat/0000.jpg
    assert test[3000]["label"] == CIFAR10_CLASSES.index("cat")
    image = test[3000]["image"]
    assert image.size == (32, 32) and image.mode == "RGB" and np.asarray(image).std() > 10

    # The extracted folders also work as image folders for the generic loader.
    extracted = CACHE_DIR / "cifar10_jpeg"
    only_test = load_cifar10_jpeg(shared_path("data"), CACHE_DIR, splits=("test",))
    assert list(only_test) == ["test"]
    assert (extracted / "test" / "cat" / "0000.jpg").is_file()


def test_cifar10_through_the_pretraining_pipeline():
    cifar = load_cifar10_jpeg(shared_path("data"), CACHE_DIR, splits=("test",))
    datasets = load_pretraining_dataset(dataset=cifar["test"].select(range(0, 10000, 1000)), train_val_split=0.2)
    transformed, counter = attach_transforms(datasets, EvalTransform(32, crop_pct=1.0))
    assert transformed["train"][0]["pixel_values"].shape == (3, 32, 32)
    assert (len(transformed["train"]), len(transformed["validation"]), counter.count) == (8, 2, 0)


# ------------------------------------------------------------------------------------------------------- tiny COCO


def test_tiny_coco_counts_captions_and_semantic_maps():
    datasets = load_tiny_coco(shared_path("data"), CACHE_DIR)
    assert {split: len(data) for split, data in datasets.items()} == {"train": 50, "validation": 50}
    for data in datasets.values():
        assert all(len(captions) == 5 and all(text.strip() for text in captions) for captions in data["captions"])
        assert len(set(data["image_id"])) == 50
    assert sum(datasets["train"]["num_instances"]) + sum(datasets["validation"]["num_instances"]) == 852 - 10

    train = datasets["train"]
    first = train[0]
    assert first["file_name"] == "000000391895.jpg"
    assert first["captions"][0] == "A man with a red helmet on a small moped on a dirt road."
    assert first["image"].size == first["semantic_map"].size == (640, 360)
    assert first["semantic_map"].mode == "L"

    # 000000184613.jpg: a child with an umbrella among cows, a crowd of people at the left.
    row = train[train["image_id"].index(184613)]
    semantic = np.asarray(row["semantic_map"])
    assert semantic.shape == (336, 500)
    assert row["captions"][0] == "A child holding a flowered umbrella and petting a yak."
    assert semantic[10, 250] == 0  # sky
    assert semantic[150, 200] == 1  # person (the child)
    assert semantic[70, 180] == 26  # umbrella (COCO id 28)
    assert semantic[200, 400] == 20  # cow (COCO id 21)
    assert semantic[83, 97] == COCO_IGNORE_INDEX  # crowd region
    assert set(np.unique(semantic)) == {0, 1, 20, 26, COCO_IGNORE_INDEX}

    id2label = tiny_coco_id2label(shared_path("data"), CACHE_DIR)
    assert len(id2label) == 81
    assert (id2label[0], id2label[1], id2label[20], id2label[26], id2label[80]) == (
        "background",
        "person",
        "cow",
        "umbrella",
        "toothbrush",
    )
