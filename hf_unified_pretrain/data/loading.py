"""One entry point for pre-training data: `load_pretraining_dataset`.

Sources, in order of precedence:

1. `dataset_name`: anything `datasets.load_dataset` accepts (a Hub name, a local dataset repo or folder of images), or
   a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`;
2. `train_dir` (+ optional `validation_dir`): folders of images loaded with the `imagefolder` builder (sub-folder
   names become a `label` column), which works offline;
3. nothing: the embedded default of `embedded.py` (crops of scikit-image's photographs).

The result always has a `train` split and an image column named `image` (the column is renamed when it was found
under another name); a `validation` split is split off `train` when the source has none (except when streaming).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from datasets import (
    Dataset,
    DatasetDict,
    Features,
    IterableDataset,
    IterableDatasetDict,
    Value,
    load_dataset,
    load_from_disk,
)
from datasets import Image as ImageFeature
from PIL import Image

from .decoding import IMAGE_COLUMN
from .embedded import DEFAULT_IMAGE_SIZE, DEFAULT_NUM_EMBEDDED_IMAGES, load_embedded_dataset

logger = logging.getLogger(__name__)

_FALLBACK_IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class EmptyImageDatasetError(ValueError):
    """Raised when the requested source holds no images."""


def _image_extensions() -> set[str]:
    try:
        from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

        return {extension.lower() for extension in ImageFolder.EXTENSIONS}
    except (ImportError, AttributeError):
        return _FALLBACK_IMAGE_EXTENSIONS


def _check_image_folder(folder: str, argument: str) -> str:
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{argument}={folder!r} is not an existing folder; pass a folder of image files.")
    extensions = _image_extensions()
    for _, _, files in os.walk(path):
        if any(Path(name).suffix.lower() in extensions for name in files):
            return str(path.resolve())
    raise EmptyImageDatasetError(
        f"{argument}={folder!r} contains no image files (looked for {', '.join(sorted(extensions)[:8])}, ...). "
        "Put images (optionally in one sub-folder per class) into it, or pass dataset_name instead."
    )


def _is_saved_to_disk(path: str) -> bool:
    folder = Path(path).expanduser()
    return folder.is_dir() and any((folder / name).is_file() for name in ("dataset_dict.json", "state.json"))


def _load_saved(path: str, source: str) -> Dataset | DatasetDict:
    folder = Path(path).expanduser()
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text())["splits"]
        states = {split: folder / split / "state.json" for split in splits}
    else:
        states = {"train": folder / "state.json"}
    # `load_from_disk` itself fails with an IndexError on a saved split without rows: report it clearly instead.
    for split, state in states.items():
        if state.is_file() and not json.loads(state.read_text()).get("_data_files", [None]):
            raise EmptyImageDatasetError(
                f"The {split!r} split of {source} has 0 examples. Point it at a dataset (or folder) with images."
            )
    return load_from_disk(str(folder))


def _is_image_like(feature: object) -> bool:
    return isinstance(feature, ImageFeature) or (
        isinstance(feature, Value) and feature.dtype in ("string", "large_string", "binary", "large_binary")
    )


def resolve_image_column(
    columns: Iterable[str], features: Features | None = None, requested: str | None = None, source: str = "dataset"
) -> str:
    """Finds the image column: the requested one, else `image`, else `img`, else the first `Image` feature.

    Args:
        columns: Column names.
        features: The dataset's features (None when unknown, e.g. some streaming datasets).
        requested: Column asked for by the user (`--image_column_name`).
        source: Description of the source, used in error messages.

    Returns:
        The column name.

    Raises:
        ValueError: The requested column is absent or not an image column, or no image column can be found.
    """
    columns = list(columns)
    if requested is not None:
        if requested not in columns:
            raise ValueError(
                f"image_column_name={requested!r} is not a column of {source}; its columns are {columns}. "
                "Pass one of them as image_column_name."
            )
        if features is not None and requested in features and not _is_image_like(features[requested]):
            raise ValueError(
                f"Column {requested!r} of {source} holds {features[requested]!r}, not images. Pass the column with "
                f"the images as image_column_name (columns: {columns})."
            )
        return requested
    for candidate in ("image", "img"):
        if candidate in columns:
            return candidate
    if features is not None:
        for name, feature in features.items():
            if isinstance(feature, ImageFeature):
                return name
    raise ValueError(
        f"Cannot find an image column in {source} (columns: {columns}); expected `image`, `img` or an Image "
        "feature. Pass image_column_name to name it."
    )


def _peek(dataset: IterableDataset) -> dict | None:
    return next(iter(dataset.take(1)), None)


def _describe_source(dataset_name: str | None, config: str | None, train_dir: str | None, dataset: object) -> str:
    if dataset is not None:
        return f"the given {type(dataset).__name__}"
    if dataset_name is not None:
        return f"dataset {dataset_name!r}" + (f" (config {config!r})" if config else "")
    if train_dir is not None:
        return f"image folder {train_dir!r}"
    return "the embedded default dataset"


def load_pretraining_dataset(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    *,
    dataset: Dataset | DatasetDict | IterableDataset | IterableDatasetDict | None = None,
    train_dir: str | None = None,
    validation_dir: str | None = None,
    streaming: bool = False,
    image_column_name: str | None = None,
    cache_dir: str | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    train_val_split: float | None = 0.15,
    seed: int = 0,
    embedded_num_images: int = DEFAULT_NUM_EMBEDDED_IMAGES,
    embedded_image_size: int = DEFAULT_IMAGE_SIZE,
) -> DatasetDict | IterableDatasetDict:
    """Loads a pre-training dataset from a `datasets` name/path, image folders, or the embedded default.

    Args:
        dataset_name: `datasets` name or local path (also a `save_to_disk` folder). Exclusive with `train_dir`.
        dataset_config_name: `datasets` configuration name.
        dataset: An in-memory dataset (or dict of splits) to use as the source instead of loading one.
        train_dir: Folder of training images (`imagefolder`).
        validation_dir: Folder of validation images (`imagefolder`); only with `train_dir`.
        streaming: Return an `IterableDatasetDict` that reads lazily (no validation split is split off).
        image_column_name: Image column; default `image`, then `img`, then the first `Image` feature.
        cache_dir: `datasets` cache folder.
        max_train_samples: Keep a seeded random subset of this many training examples (the first ones when
            streaming).
        max_eval_samples: Same for the validation split.
        train_val_split: Fraction of `train` split off as `validation` when the source has no validation split
            (None or 0: no split).
        seed: Seed of the subset selection and of the train/validation split.
        embedded_num_images: Number of crops of the embedded default.
        embedded_image_size: Crop size of the embedded default.

    Returns:
        A `DatasetDict` (or `IterableDatasetDict` when streaming) with a `train` split, optionally `validation` and
        others, whose image column is named `image`.

    Raises:
        EmptyImageDatasetError: The source (or one of its splits) holds no examples.
        ValueError: Conflicting arguments, or the image column cannot be resolved.
        FileNotFoundError: A folder does not exist.
    """
    sources = (("dataset_name", dataset_name), ("dataset", dataset), ("train_dir", train_dir))
    given = [name for name, value in sources if value is not None]
    if len(given) > 1:
        raise ValueError(f"Pass only one of dataset_name, dataset and train_dir/validation_dir; got {given}.")
    if validation_dir is not None and train_dir is None:
        raise ValueError("validation_dir needs train_dir; pass the training images folder as train_dir too.")
    if train_val_split is not None and not 0 <= train_val_split < 1:
        raise ValueError(f"train_val_split must be in [0, 1), got {train_val_split}.")
    source = _describe_source(dataset_name, dataset_config_name, train_dir, dataset)

    if dataset is not None:
        loaded = type(dataset)(dataset) if isinstance(dataset, dict) else dataset  # never edit the caller's dict
        if streaming and isinstance(loaded, Dataset):
            loaded = loaded.to_iterable_dataset()
        elif streaming and isinstance(loaded, DatasetDict):
            loaded = IterableDatasetDict({split: data.to_iterable_dataset() for split, data in loaded.items()})
    elif dataset_name is not None and _is_saved_to_disk(dataset_name):
        loaded = _load_saved(dataset_name, source)
        if isinstance(loaded, Dataset):
            loaded = DatasetDict({"train": loaded})
        if streaming:
            loaded = IterableDatasetDict({split: data.to_iterable_dataset() for split, data in loaded.items()})
    elif dataset_name is not None:
        try:
            loaded = load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir, streaming=streaming)
        except Exception as error:
            if type(error).__name__ == "EmptyDatasetError":
                raise EmptyImageDatasetError(
                    f"{source} contains no data files. Point dataset_name at a dataset or a folder with images."
                ) from error
            raise
    elif train_dir is not None:
        data_files = {"train": os.path.join(_check_image_folder(train_dir, "train_dir"), "**")}
        if validation_dir is not None:
            data_files["validation"] = os.path.join(_check_image_folder(validation_dir, "validation_dir"), "**")
        loaded = load_dataset("imagefolder", data_files=data_files, cache_dir=cache_dir, streaming=streaming)
    else:
        logger.info("No dataset given: using the embedded default (crops of scikit-image's photographs).")
        embedded = load_embedded_dataset(embedded_num_images, embedded_image_size, seed)
        loaded = DatasetDict({"train": embedded})
        if streaming:
            loaded = IterableDatasetDict({"train": embedded.to_iterable_dataset()})

    loaded = _normalize_splits(loaded, source)
    loaded = _rename_image_column(loaded, image_column_name, source)
    _check_not_empty(loaded, source)

    if "validation" not in loaded and train_val_split and not streaming:
        if len(loaded["train"]) < 2:
            logger.warning("%s has fewer than 2 training examples; no validation split is made.", source)
        else:
            parts = loaded["train"].train_test_split(test_size=train_val_split, seed=seed)
            loaded["train"], loaded["validation"] = parts["train"], parts["test"]

    for split, limit in (("train", max_train_samples), ("validation", max_eval_samples)):
        if limit is not None and split in loaded:
            if limit <= 0:
                raise ValueError(f"max samples for {split!r} must be positive, got {limit}.")
            data = loaded[split]
            if isinstance(data, IterableDataset):
                loaded[split] = data.take(limit)
            else:
                loaded[split] = data.shuffle(seed=seed).select(range(min(limit, len(data))))
    return loaded


def _normalize_splits(
    loaded: DatasetDict | IterableDatasetDict | Dataset | IterableDataset, source: str
) -> DatasetDict | IterableDatasetDict:
    if isinstance(loaded, Dataset):
        loaded = DatasetDict({"train": loaded})
    elif isinstance(loaded, IterableDataset):
        loaded = IterableDatasetDict({"train": loaded})
    if not loaded:
        raise EmptyImageDatasetError(f"{source} has no splits. Point it at a dataset with images.")
    if "validation" not in loaded and "val" in loaded:
        loaded["validation"] = loaded.pop("val")
    if "train" not in loaded:
        if len(loaded) != 1:
            raise ValueError(
                f"{source} has no 'train' split (splits: {sorted(loaded)}). Pass a dataset with a 'train' split, or "
                "use train_dir/validation_dir."
            )
        (only_split,) = loaded
        logger.info("%s has the single split %r; using it for training.", source, only_split)
        loaded["train"] = loaded.pop(only_split)
    return loaded


def _rename_image_column(
    loaded: DatasetDict | IterableDatasetDict, requested: str | None, source: str
) -> DatasetDict | IterableDatasetDict:
    train = loaded["train"]
    columns, features = train.column_names, train.features
    if columns is None:  # streaming datasets without declared features: look at one example
        first = _peek(train)
        if first is None:
            raise EmptyImageDatasetError(f"{source} yields no examples. Point it at a dataset with images.")
        columns = list(first)
        features = Features({k: ImageFeature() for k, v in first.items() if isinstance(v, Image.Image)}) or None
    column = resolve_image_column(columns, features, requested, source)
    if column == IMAGE_COLUMN:
        return loaded
    logger.info("Using column %r of %s as the image column (renamed to %r).", column, source, IMAGE_COLUMN)
    for split, data in loaded.items():
        if data.column_names is not None and IMAGE_COLUMN in data.column_names:
            data = data.remove_columns(IMAGE_COLUMN)
        loaded[split] = data.rename_column(column, IMAGE_COLUMN)
    return loaded


def _check_not_empty(loaded: DatasetDict | IterableDatasetDict, source: str) -> None:
    for split, data in loaded.items():
        if isinstance(data, IterableDataset):
            if split == "train" and _peek(data) is None:
                raise EmptyImageDatasetError(
                    f"The 'train' split of {source} yields no examples. Point it at a dataset with images."
                )
        elif len(data) == 0:
            raise EmptyImageDatasetError(
                f"The {split!r} split of {source} has 0 examples. Point it at a dataset (or folder) with images, or "
                "drop the empty split."
            )
