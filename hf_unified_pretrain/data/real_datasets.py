"""Loaders for the real-data archives used by tests and benchmarks: CIFAR-10 (JPEG) and tiny COCO.

The archives (`cifar10_jpeg.tar.gz`, `tiny_coco.tar.gz`) live in a data folder that the caller passes in (for this
project's tests: `../shared/data`, reached through `tests.conftest.shared_path`); nothing here knows where it is.
Each archive is extracted once into a cache folder (`cache_dir`, default `$HF_UNIFIED_PRETRAIN_DATA_CACHE` or
`~/.cache/hf_unified_pretrain/data`): it is unpacked into a temporary sibling folder which is then renamed into
place, so an interrupted or concurrent extraction never leaves a half-filled folder behind.

Tiny COCO semantic maps: instance polygons are rasterised with `PIL.ImageDraw` (no pycocotools), one uint8 label
per pixel: 0 = background, 1..80 = the 80 COCO categories in increasing category-id order (person = 1, ...,
toothbrush = 80), 255 = ignore (crowd regions). Larger instances are drawn first, so a smaller object lying on a
larger one stays visible.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from datasets import Image as ImageFeature
from datasets import Sequence as SequenceFeature
from PIL import Image, ImageDraw

logger = logging.getLogger(__name__)

CIFAR10_ARCHIVE = "cifar10_jpeg.tar.gz"
TINY_COCO_ARCHIVE = "tiny_coco.tar.gz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
COCO_BACKGROUND = 0
COCO_IGNORE_INDEX = 255
_COMPLETE_MARKER = ".extraction_complete"
_TINY_COCO_SPLITS = {"train": "train2017", "validation": "val2017"}


def default_data_cache_dir() -> Path:
    """`$HF_UNIFIED_PRETRAIN_DATA_CACHE`, else `~/.cache/hf_unified_pretrain/data`."""
    configured = os.environ.get("HF_UNIFIED_PRETRAIN_DATA_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "hf_unified_pretrain" / "data"


def find_archive(data_root: str | os.PathLike, archive_name: str) -> Path:
    """Locates `archive_name` in `data_root` or `data_root/data` (so the shared root or its data folder both work).

    Raises:
        FileNotFoundError: The archive is in neither place.
    """
    root = Path(data_root).expanduser()
    for candidate in (root / archive_name, root / "data" / archive_name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{archive_name} not found in {root} or {root / 'data'}; pass the folder that holds the archive."
    )


def extract_archive(archive: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Extracts a .tar.gz archive once into `cache_dir/<archive name without .tar.gz>` (atomic, cached).

    Args:
        archive: Path to the archive.
        cache_dir: Cache folder (default `default_data_cache_dir()`).

    Returns:
        The folder holding the archive's contents.
    """
    archive = Path(archive)
    cache = Path(cache_dir) if cache_dir is not None else default_data_cache_dir()
    name = archive.name.removesuffix(".gz").removesuffix(".tgz").removesuffix(".tar")
    target = cache / name
    if (target / _COMPLETE_MARKER).is_file():
        return target
    if target.exists():
        raise RuntimeError(
            f"{target} exists but is not a complete extraction of {archive.name} (it was not made by this loader). "
            "Delete it and try again."
        )
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=cache))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it owner-only; the final folder should look like any other
    try:
        logger.info("Extracting %s into %s (once).", archive, target)
        with tarfile.open(archive, "r:*") as tar:
            # The "data" filter refuses absolute paths, links out of the folder and device files.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")
            else:  # Python < 3.10.12 / 3.11.4
                tar.extractall(staging)
        (staging / _COMPLETE_MARKER).write_text(json.dumps({"archive": archive.name, "bytes": archive.stat().st_size}))
        try:
            os.rename(staging, target)
        except OSError:
            # Another process finished first; its copy is complete (the marker is written before the rename).
            if not (target / _COMPLETE_MARKER).is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def extract_cifar10_jpeg(data_root: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Extracts CIFAR-10 JPEG once; returns the folder holding `train/<class>/*.jpg` and `test/<class>/*.jpg`.

    The `train` / `test` sub-folders can be passed as `train_dir` / `validation_dir` to `load_pretraining_dataset`.
    """
    return extract_archive(find_archive(data_root, CIFAR10_ARCHIVE), cache_dir)


def load_cifar10_jpeg(
    data_root: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    splits: Sequence[str] = ("train", "test"),
) -> DatasetDict:
    """CIFAR-10 as JPEG files (50,000 train / 10,000 test, 32x32 RGB) with class labels.

    Gives the columns `imagefolder` would (`image` read lazily from the extracted files, `label` a `ClassLabel` with
    the class-folder names, which sorted are CIFAR-10's canonical order), but is built directly from the sorted
    file list, which takes well under a second instead of `imagefolder`'s minute for the train split.

    Args:
        data_root: Folder holding `cifar10_jpeg.tar.gz` (or its parent's `data/`).
        cache_dir: Extraction cache folder.
        splits: Any of "train", "test".

    Returns:
        `DatasetDict` with the requested splits, columns `image` (Image) and `label` (ClassLabel, 10 names).
    """
    root = extract_cifar10_jpeg(data_root, cache_dir)
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=list(CIFAR10_CLASSES))})
    output = DatasetDict()
    for split in splits:
        split_dir = root / split
        if not split_dir.is_dir():
            raise ValueError(f"Unknown CIFAR-10 split {split!r}; the archive has 'train' and 'test'.")
        class_names = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
        if tuple(class_names) != CIFAR10_CLASSES:
            raise ValueError(f"{split_dir} has class folders {class_names}, expected {list(CIFAR10_CLASSES)}.")
        paths, labels = [], []
        for label, class_name in enumerate(class_names):
            files = sorted(entry.name for entry in os.scandir(split_dir / class_name) if entry.name.endswith(".jpg"))
            paths.extend(str(split_dir / class_name / name) for name in files)
            labels.extend([label] * len(files))
        output[split] = Dataset.from_dict(
            {"image": [{"path": path, "bytes": None} for path in paths], "label": labels}, features=features
        )
    return output


def coco_category_to_label(categories: Sequence[Mapping]) -> dict[int, int]:
    """Maps COCO category ids (1..90 with gaps) to contiguous labels 1..K in increasing id order (0 = background)."""
    return {category_id: index + 1 for index, category_id in enumerate(sorted(c["id"] for c in categories))}


def coco_id2label(categories: Sequence[Mapping]) -> dict[int, str]:
    """Label -> name for the semantic maps: {0: "background", 1: "person", ..., 80: "toothbrush"}."""
    names = {c["id"]: c["name"] for c in categories}
    mapping = coco_category_to_label(categories)
    return {COCO_BACKGROUND: "background", **{label: names[cid] for cid, label in mapping.items()}}


def decode_uncompressed_rle(counts: Sequence[int], height: int, width: int) -> np.ndarray:
    """Decodes COCO's uncompressed run-length encoding.

    Args:
        counts: Alternating run lengths, starting with a run of zeros, over the column-major (Fortran) pixel order.
        height: Mask height.
        width: Mask width.

    Returns:
        (height, width) bool mask.
    """
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, np.asarray(counts, dtype=np.int64))
    if flat.size != height * width:
        raise ValueError(f"RLE counts cover {flat.size} pixels, expected {height} x {width} = {height * width}.")
    return flat.reshape(width, height).T


def rasterize_coco_semantic_map(
    annotations: Sequence[Mapping], height: int, width: int, category_to_label: Mapping[int, int]
) -> np.ndarray:
    """Turns one image's COCO instance annotations into a semantic label map.

    Crowd regions (RLE) are painted `COCO_IGNORE_INDEX` first; then polygons are filled with their contiguous label,
    largest instance first so that smaller objects on top of larger ones stay visible.

    Args:
        annotations: The image's entries of `instances_*.json["annotations"]`.
        height: Image height.
        width: Image width.
        category_to_label: From `coco_category_to_label`.

    Returns:
        (height, width) uint8 map: 0 background, 1..K categories, 255 ignore.
    """
    semantic = np.full((height, width), COCO_BACKGROUND, dtype=np.uint8)
    for annotation in annotations:
        segmentation = annotation["segmentation"]
        if not annotation.get("iscrowd"):
            continue
        if isinstance(segmentation, Mapping) and isinstance(segmentation.get("counts"), list):
            rle_height, rle_width = segmentation.get("size", (height, width))
            semantic[decode_uncompressed_rle(segmentation["counts"], rle_height, rle_width)] = COCO_IGNORE_INDEX
        else:
            logger.warning("Skipping a crowd region in compressed RLE (annotation id %s).", annotation.get("id"))
    canvas = Image.fromarray(semantic)
    draw = ImageDraw.Draw(canvas)
    polygons = [a for a in annotations if not a.get("iscrowd") and isinstance(a["segmentation"], list)]
    for annotation in sorted(polygons, key=lambda a: (-float(a.get("area", 0.0)), a.get("id", 0))):
        label = category_to_label[annotation["category_id"]]
        for polygon in annotation["segmentation"]:
            if len(polygon) >= 6:  # at least three (x, y) vertices
                draw.polygon(list(zip(polygon[0::2], polygon[1::2], strict=True)), fill=label)
    return np.asarray(canvas)


def _encode_png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def tiny_coco_id2label(data_root: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> dict[int, str]:
    """Label names of the tiny COCO semantic maps ({0: "background", 1: "person", ...})."""
    root = extract_archive(find_archive(data_root, TINY_COCO_ARCHIVE), cache_dir) / "tiny_coco"
    return coco_id2label(_read_json(root / "annotations" / "instances_train2017.json")["categories"])


def load_tiny_coco(
    data_root: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    splits: Sequence[str] = ("train", "validation"),
) -> DatasetDict:
    """Tiny COCO (50 train2017 + 50 val2017 real photos) with captions and rasterised semantic maps.

    Args:
        data_root: Folder holding `tiny_coco.tar.gz` (or its parent's `data/`).
        cache_dir: Extraction cache folder.
        splits: Any of "train" (train2017), "validation" (val2017).

    Returns:
        `DatasetDict` with columns `image` (Image, read lazily from the extracted JPEG), `image_id` (COCO id),
        `file_name`, `captions` (list of str, 5 per image), `semantic_map` (Image, mode "L", same size as the image;
        values as in the module docstring) and `num_instances` (non-crowd instances drawn). Rows follow the order
        of the annotation file's `images`.
    """
    root = extract_archive(find_archive(data_root, TINY_COCO_ARCHIVE), cache_dir) / "tiny_coco"
    features = Features(
        {
            "image": ImageFeature(),
            "image_id": Value("int64"),
            "file_name": Value("string"),
            "captions": SequenceFeature(Value("string")),
            "semantic_map": ImageFeature(),
            "num_instances": Value("int32"),
        }
    )
    output = DatasetDict()
    for split in splits:
        if split not in _TINY_COCO_SPLITS:
            raise ValueError(f"Unknown tiny COCO split {split!r}; choose from {sorted(_TINY_COCO_SPLITS)}.")
        folder = _TINY_COCO_SPLITS[split]
        instances = _read_json(root / "annotations" / f"instances_{folder}.json")
        captions_file = _read_json(root / "annotations" / f"captions_{folder}.json")
        category_to_label = coco_category_to_label(instances["categories"])
        annotations_by_image: dict[int, list[dict]] = defaultdict(list)
        for annotation in instances["annotations"]:
            annotations_by_image[annotation["image_id"]].append(annotation)
        captions_by_image: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for caption in captions_file["annotations"]:
            captions_by_image[caption["image_id"]].append((caption["id"], caption["caption"].strip()))

        rows: dict[str, list] = {name: [] for name in features}
        for info in instances["images"]:
            image_annotations = annotations_by_image[info["id"]]
            semantic = rasterize_coco_semantic_map(image_annotations, info["height"], info["width"], category_to_label)
            rows["image"].append({"path": str(root / folder / info["file_name"]), "bytes": None})
            rows["image_id"].append(info["id"])
            rows["file_name"].append(info["file_name"])
            rows["captions"].append([text for _, text in sorted(captions_by_image[info["id"]])])
            rows["semantic_map"].append({"path": None, "bytes": _encode_png(semantic)})
            rows["num_instances"].append(sum(1 for a in image_annotations if not a.get("iscrowd")))
        output[split] = Dataset.from_dict(rows, features=features)
    return output
