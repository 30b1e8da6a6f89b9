"""Pseudo labels for multi-modal pre-training: depth and semantic maps from any local HF models (MultiMAE recipe).

MultiMAE pre-trains on ImageNet with pseudo depth (Omnidata DPT) and pseudo semantic maps (COCO Mask2Former).
`pseudo_label_dataset` reproduces that step with any depth-estimation model (`AutoModelForDepthEstimation`: DPT,
Depth Anything, GLPN, ...) and any semantic/universal segmentation model (`AutoModelForSemanticSegmentation`:
UperNet, SegFormer, ...; or `AutoModelForUniversalSegmentation`: Mask2Former, OneFormer, ...) loaded from local
folders. It writes the RGB dataset with two more columns: `depth` (float32 TIFF images at the RGB image size,
full precision) and `semseg` (8-bit PNG class maps, 16-bit when the model has more than 255 classes).

Work is done in chunks saved to `output_dir/chunks/<index>`, so an interrupted run resumes where it stopped; the
final dataset is `output_dir/dataset` (`datasets.load_from_disk`). Command line: `hf-unified-pretrain pseudo-label`.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset, concatenate_datasets, load_from_disk
from datasets import Image as ImageFeature
from PIL import Image

from .decoding import decode_image

logger = logging.getLogger(__name__)
_DONE = "chunk_complete.json"


def _load(folder: str | os.PathLike, kind: str, device: str):
    from transformers import (
        AutoImageProcessor,
        AutoModelForDepthEstimation,
        AutoModelForSemanticSegmentation,
        AutoModelForUniversalSegmentation,
    )

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a saved model folder (no config.json); pass a local folder.")
    processor = AutoImageProcessor.from_pretrained(folder)
    if kind == "depth":
        model = AutoModelForDepthEstimation.from_pretrained(folder)
    else:
        try:
            model = AutoModelForSemanticSegmentation.from_pretrained(folder)
        except ValueError:
            model = AutoModelForUniversalSegmentation.from_pretrained(folder)
    return processor, model.to(device).eval()


def _encode(array: np.ndarray, mode: str | None = None) -> dict[str, Any]:
    buffer = io.BytesIO()
    image = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
    image.save(buffer, format="TIFF" if array.dtype == np.float32 else "PNG")
    return {"bytes": buffer.getvalue(), "path": None}


@torch.no_grad()
def _predict_depth(processor, model, images: list[Image.Image], device: str) -> list[np.ndarray]:
    inputs = processor(images=images, return_tensors="pt").to(device)
    predicted = model(**inputs).predicted_depth
    if predicted.dim() == 3:
        predicted = predicted[:, None]
    maps = []
    for index, image in enumerate(images):
        resized = F.interpolate(
            predicted[index : index + 1].float(), size=(image.height, image.width), mode="bilinear"
        )
        maps.append(resized[0, 0].cpu().numpy().astype(np.float32))
    return maps


@torch.no_grad()
def _predict_semseg(processor, model, images: list[Image.Image], device: str) -> list[np.ndarray]:
    inputs = processor(images=images, return_tensors="pt").to(device)
    outputs = model(**inputs)
    sizes = [(image.height, image.width) for image in images]
    if hasattr(processor, "post_process_semantic_segmentation"):
        maps = processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
    else:
        logits = outputs.logits
        maps = [
            F.interpolate(logits[i : i + 1], size=size, mode="bilinear").argmax(1)[0] for i, size in enumerate(sizes)
        ]
    return [torch.as_tensor(m).cpu().numpy() for m in maps]


@contextmanager
def _datasets_progress_bars(enabled: bool) -> Iterator[None]:
    """Turns the `datasets` library's bars (loading, "Saving the dataset") off while the block runs when `enabled`
    is False, then restores the caller's setting."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    if not enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            datasets.enable_progress_bars()


def pseudo_label_dataset(
    dataset: Dataset | str | os.PathLike,
    output_dir: str | os.PathLike,
    depth_model: str | os.PathLike | None = None,
    segmentation_model: str | os.PathLike | None = None,
    *,
    image_column: str = "image",
    batch_size: int = 8,
    chunk_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> Dataset:
    """Adds pseudo `depth` and `semseg` columns to an RGB dataset, batched and resumable.

    Args:
        dataset: A `datasets.Dataset` with an image column, a `save_to_disk` folder, or an image folder.
        output_dir: Where chunks and the final dataset (`output_dir/dataset`) are written.
        depth_model: Local folder of a depth-estimation model (+ its image processor), or None to skip depth.
        segmentation_model: Local folder of a semantic or universal segmentation model, or None to skip semseg.
        image_column: Column holding the RGB images.
        batch_size: Images per forward pass.
        chunk_size: Images per saved chunk (the unit of resumption).
        device: Device of the models.
        progress: Show progress bars (False also silences the `datasets` loading/saving bars while this runs).

    Returns:
        The labelled dataset (also saved to `output_dir/dataset`).
    """
    if depth_model is None and segmentation_model is None:
        raise ValueError("Give depth_model and/or segmentation_model (local model folders).")
    if batch_size < 1 or chunk_size < 1:
        raise ValueError("batch_size and chunk_size must be >= 1.")
    with _datasets_progress_bars(progress):
        if not isinstance(dataset, Dataset):
            path = Path(dataset)
            if (path / "dataset_info.json").exists() or (path / "state.json").exists():
                dataset = load_from_disk(str(path))
            else:
                from datasets import load_dataset

                dataset = load_dataset("imagefolder", data_dir=str(path), split="train")
        if image_column not in dataset.column_names:
            raise KeyError(f"Column {image_column!r} not found; the dataset has {dataset.column_names}.")
        output_dir = Path(output_dir)
        chunks_dir = output_dir / "chunks"
        chunks_dir.mkdir(parents=True, exist_ok=True)
        depth = _load(depth_model, "depth", device) if depth_model is not None else None
        segmentation = _load(segmentation_model, "semseg", device) if segmentation_model is not None else None
        num_classes = segmentation[1].config.num_labels if segmentation is not None else 0
        signature = {
            "depth_model": str(depth_model),
            "segmentation_model": str(segmentation_model),
            "rows": len(dataset),
        }

        from tqdm.auto import tqdm

        bar = tqdm(total=len(dataset), desc="pseudo-labelling", unit="img", disable=not progress)
        paths = []
        for chunk_index, start in enumerate(range(0, len(dataset), chunk_size)):
            chunk_path = chunks_dir / f"{chunk_index:05d}"
            stop = min(start + chunk_size, len(dataset))
            marker = chunk_path / _DONE
            if marker.exists() and json.loads(marker.read_text()) == {**signature, "start": start, "stop": stop}:
                paths.append(chunk_path)
                bar.update(stop - start)
                continue
            shutil.rmtree(chunk_path, ignore_errors=True)
            rows = dataset.select(range(start, stop))
            depth_column, semseg_column = [], []
            for batch_start in range(0, len(rows), batch_size):
                images = [decode_image(value) for value in rows[batch_start : batch_start + batch_size][image_column]]
                if depth is not None:
                    depth_column += [_encode(m) for m in _predict_depth(*depth, images, device)]
                if segmentation is not None:
                    dtype = np.uint16 if num_classes > 255 else np.uint8
                    semseg_column += [_encode(m.astype(dtype)) for m in _predict_semseg(*segmentation, images, device)]
                bar.update(len(images))
            labelled = rows
            if depth is not None:
                labelled = labelled.add_column("depth", depth_column, feature=ImageFeature())
            if segmentation is not None:
                labelled = labelled.add_column("semseg", semseg_column, feature=ImageFeature())
            labelled.save_to_disk(str(chunk_path))
            marker.write_text(json.dumps({**signature, "start": start, "stop": stop}))
            paths.append(chunk_path)
        bar.close()
        result = concatenate_datasets([load_from_disk(str(path)) for path in paths])
        final = output_dir / "dataset"
        shutil.rmtree(final, ignore_errors=True)
        result.save_to_disk(str(final))
        return load_from_disk(str(final))


__all__ = ["pseudo_label_dataset"]
