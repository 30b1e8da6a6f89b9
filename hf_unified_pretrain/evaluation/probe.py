"""kNN and linear-probe evaluation of a frozen model on labelled images (class sub-folders or tensors).

model = load_feature_model("outputs/itpn-quickstart")
transform = probe_transform(model.config, "outputs/itpn-quickstart")
train = load_image_folder("cifar/train", transform, max_images=5000)
test = load_image_folder("cifar/test", transform, max_images=1000, class_names=train.class_names)
results = evaluate_probe(model, train, test)   # {"pooled": {"knn_top1": ..., "linear_top1": ...}}
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .features import POOLED, extract_features
from .knn import DEFAULT_K, DEFAULT_TEMPERATURE, knn_accuracy
from .linear_probe import DEFAULT_EPOCHS, linear_probe

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class LabelledImages:
    """Normalised images with integer labels.

    Attributes:
        pixel_values: (N, C, H, W).
        labels: (N,) indices into `class_names`.
        class_names: Sorted class-folder names.
    """

    pixel_values: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]

    def __len__(self) -> int:
        return self.labels.shape[0]


def probe_transform(config, processor_source: str | os.PathLike | None = None, image_size: int | None = None):
    """The evaluation transform of a model: its processor's mean/std (ImageNet's without one), whole image resized
    to `image_size` (default the config's `image_size`), no crop.

    Args:
        config: The model config (`image_size`).
        processor_source: Folder with a `preprocessor_config.json`, if any.
        image_size: Override of the input side.
    """
    from ..data import EvalTransform

    mean = std = None
    if processor_source is not None and (Path(processor_source) / "preprocessor_config.json").is_file():
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(processor_source)
        mean, std = processor.image_mean, processor.image_std
    if image_size is None:
        size = getattr(config, "image_size", None)
        if size is None:
            raise ValueError("The model config has no image_size: pass image_size explicitly.")
        image_size = size if isinstance(size, int) else tuple(size)
    kwargs = {"image_mean": mean, "image_std": std} if mean is not None else {}
    return EvalTransform(image_size, crop_pct=1.0, **kwargs)


def list_image_folder(
    folder: str | os.PathLike, max_images: int | None = None, class_names: Sequence[str] | None = None
) -> tuple[list[tuple[Path, int]], list[str]]:
    """(path, label) pairs of an image folder with one sub-folder per class.

    With `max_images`, classes take turns (first file of every class, then the second, ...), so a subset stays
    class-balanced and is the same on every call.

    Args:
        folder: Root with `<class>/<image>` files.
        max_images: Keep at most this many images.
        class_names: Label order to use (e.g. the training folder's), default the sorted sub-folder names.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {str(root)!r} does not exist.")
    found = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not found:
        raise ValueError(f"{str(root)!r} has no class sub-folders: expected <folder>/<class name>/<image files>.")
    names = list(class_names) if class_names is not None else found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise ValueError(f"{str(root)!r} has class folders {unknown} that are not among the classes {names}.")
    per_class = [
        sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS) if name in found else []
        for name in names
    ]
    longest = max(len(files) for files in per_class)
    pairs = [
        (files[position], label)
        for position in range(longest)
        for label, files in enumerate(per_class)
        if position < len(files)
    ]
    if not pairs:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {str(root)!r}.")
    return pairs[:max_images] if max_images is not None else pairs, names


def load_image_folder(
    folder: str | os.PathLike,
    transform: Callable,
    max_images: int | None = None,
    class_names: Sequence[str] | None = None,
    progress: bool = False,
) -> LabelledImages:
    """Decodes and transforms a class-folder image set (see `list_image_folder` for the subset rule).

    Args:
        transform: Image -> `{"pixel_values": (C, H, W)}` (e.g. `probe_transform(...)`).
    """
    from PIL import Image

    pairs, names = list_image_folder(folder, max_images, class_names)
    if progress:
        from tqdm.auto import tqdm

        pairs = tqdm(pairs, desc=f"loading {Path(folder).name}", unit="img")
    pixels, labels = [], []
    for path, label in pairs:
        with Image.open(path) as image:
            pixels.append(transform(image)["pixel_values"])
        labels.append(label)
    return LabelledImages(torch.stack(pixels), torch.tensor(labels), names)


def evaluate_probe(
    model: nn.Module,
    train: LabelledImages,
    evaluation: LabelledImages,
    *,
    k: int = DEFAULT_K,
    temperature: float = DEFAULT_TEMPERATURE,
    linear_probe_epochs: int = DEFAULT_EPOCHS,
    batch_size: int = 64,
    intermediate: bool = False,
    feature_names: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """kNN (train images as the bank) and linear-probe accuracy on the evaluation images, per feature.

    Args:
        model: Any of our models (reduced to its encoder) or a transformers vision encoder.
        train / evaluation: Labelled images with the same class names.
        k / temperature: kNN neighbours and vote temperature.
        linear_probe_epochs: Epochs of the linear-probe recipe (0 skips the probe).
        batch_size: Images per forward pass.
        intermediate: Also evaluate pooled intermediate features (`hidden_states.<i>`, ...).
        feature_names: Only these features (default all extracted).
        seed: Seed of the linear probe.
        progress: tqdm progress bars.

    Returns:
        `{feature name: {"knn_top1", "knn_top5", "linear_top1"}}`, accuracies in [0, 1].
    """
    if train.class_names != evaluation.class_names:
        raise ValueError(
            f"Training and evaluation classes differ: {train.class_names} vs {evaluation.class_names}. Load the "
            "evaluation folder with class_names=train.class_names."
        )
    num_classes = len(train.class_names)
    common = dict(batch_size=batch_size, intermediate=intermediate, progress=progress)
    train_features = extract_features(model, train.pixel_values, description="train features", **common)
    eval_features = extract_features(model, evaluation.pixel_values, description="eval features", **common)
    names = list(feature_names) if feature_names is not None else list(train_features)
    missing = sorted(set(names) - set(train_features))
    if missing:
        raise ValueError(f"Unknown features {missing}; the model gives {sorted(train_features)}.")
    results = {}
    for name in names:
        knn = knn_accuracy(
            train_features[name],
            train.labels,
            eval_features[name],
            evaluation.labels,
            k=k,
            temperature=temperature,
            topk=(1, 5),
            num_classes=num_classes,
        )
        results[name] = {"knn_top1": knn["top1"], "knn_top5": knn["top5"]}
        if linear_probe_epochs > 0:
            probe = linear_probe(
                train_features[name],
                train.labels,
                eval_features[name],
                evaluation.labels,
                num_classes=num_classes,
                epochs=linear_probe_epochs,
                seed=seed,
            )
            results[name]["linear_top1"] = probe.accuracy
    return results


__all__ = [
    "POOLED",
    "LabelledImages",
    "evaluate_probe",
    "list_image_folder",
    "load_image_folder",
    "probe_transform",
]
