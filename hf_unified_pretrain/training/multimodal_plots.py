"""The cross-modal prediction picture of a multi-modal masked autoencoder (MultiMAE): per sample, every input
modality as given and as the encoder saw it (masked patches greyed out), then every decoder's prediction.

Used by `training_scripts/run_multimae.py` after training and by `hf-unified-pretrain reconstruct` on a saved model.
Drawn on matplotlib's Agg canvas directly, like `plots.py` (headless, no global backend switch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from transformers import PreTrainedModel
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

NORM_RGB = "norm_rgb"


def _picture(kind: str, values: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    """One modality map (C, H, W) or labels (H, W) -> an (H, W, 3) RGB or (H, W) array ready for `imshow`."""
    values = values.float().cpu()
    if kind == "image":
        return (values * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
    if kind == "norm":  # per-patch normalised pixels have no fixed range: stretch to [0, 1] for display
        values = (values - values.min()) / (values.max() - values.min() + 1e-6)
        return values.permute(1, 2, 0).numpy()
    if kind == "depth":
        return values[0].numpy()
    labels = values.argmax(0) if values.dim() == 3 else values  # segmentation logits or labels
    return colormaps["tab20"]((labels.numpy() % 20) / 19.0)[..., :3]


def _grey_out(picture: np.ndarray, mask: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """The picture with the cells where `mask` (N,) is True painted grey (NaN, i.e. blank, for single-channel maps)."""
    cells = mask.reshape(grid).float().cpu().numpy()
    scale_h, scale_w = picture.shape[0] // grid[0], picture.shape[1] // grid[1]
    hidden = np.kron(cells, np.ones((scale_h, scale_w))).astype(bool)
    picture = picture.copy()
    picture[hidden] = 0.5 if picture.ndim == 3 else np.nan
    return picture


@torch.no_grad()
def draw_multimodal_predictions(
    model: PreTrainedModel,
    batch: dict,
    path: Path,
    num_samples: int = 2,
    *,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
) -> Path:
    """Runs `model(**batch)` and writes one PNG: a row per sample (at most `num_samples`) with, per input modality,
    the input and its visible patches, then each task's prediction.

    Args:
        model: A MultiMAE pre-training model (`logits` and `bool_masked_pos` are dicts keyed by task / modality).
        batch: Model inputs with `modalities` ({name: (B, C, H, W) or (B, H, W)}), optionally `targets` and
            `bool_masked_pos`.
        path: The PNG file to write.
        image_mean, image_std: Normalisation of the RGB inputs, undone for display (default: ImageNet's).

    Returns:
        `path`.
    """
    outputs = model(**batch)
    inputs = {**batch["modalities"], **batch.get("targets", {})}
    config = model.config
    mean = torch.tensor(image_mean or IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
    std = torch.tensor(image_std or IMAGENET_DEFAULT_STD).view(3, 1, 1)

    def show(name: str, values: torch.Tensor) -> np.ndarray:
        kind = "norm" if name == NORM_RGB else config.modality(name).kind
        return _picture(kind, values, mean, std)

    names = list(batch["modalities"])
    tasks = list(outputs.logits)
    count = min(num_samples, next(iter(inputs.values())).shape[0])
    columns = len(names) * 2 + len(tasks)
    figure = Figure(figsize=(2.2 * columns, 2.4 * count))
    FigureCanvasAgg(figure)
    axes = figure.subplots(count, columns, squeeze=False)
    for row in range(count):
        panels = []
        for name in names:
            picture = show(name, inputs[name][row])
            panels.append((f"{name} input", picture))
            panels.append(
                (f"{name} visible", _grey_out(picture, outputs.bool_masked_pos[name][row], config.grid_size))
            )
        for task in tasks:
            panels.append((f"{task} prediction", show(task, outputs.logits[task][row])))
        for axis, (title, picture) in zip(axes[row], panels):
            axis.imshow(picture, cmap="viridis" if picture.ndim == 2 else None)
            axis.set_title(title, fontsize=8)
            axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return Path(path)
