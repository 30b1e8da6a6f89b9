"""PNG figures for pre-training runs: loss curves and masked-image-modeling reconstructions.

Figures are drawn on matplotlib's Agg canvas directly (no `pyplot`, no global backend switch), so they work on
headless machines and never disturb an interactive session.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ..objectives import PATCH_NORM_EPS, normalize_patches, patchify, unpatchify


def _loss_series(log_history: Sequence[Mapping], total_key: str) -> dict[str, tuple[list[int], list[float]]]:
    """`{key: (steps, values)}` for `total_key` and its parts `<total_key>_<part>` in the Trainer's log history."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for entry in log_history:
        if total_key not in entry or "step" not in entry:
            continue
        for key, value in entry.items():
            if (key == total_key or key.startswith(total_key + "_")) and isinstance(value, (int, float)):
                steps, values = series.setdefault(key, ([], []))
                steps.append(int(entry["step"]))
                values.append(float(value))
    return series


def plot_loss_curves(log_history: Sequence[Mapping], path: str | os.PathLike, title: str | None = None) -> Path | None:
    """Plots the training loss, every logged loss part and their eval counterparts against the optimiser step.

    Args:
        log_history: `trainer.state.log_history` (training lines carry `loss`, `loss_<part>`; eval lines
            `eval_loss`, `eval_loss_<part>`).
        path: PNG file to write (parent folders are created).
        title: optional figure title.

    Returns:
        The written path, or None when the history holds no loss yet.
    """
    train, evaluation = _loss_series(log_history, "loss"), _loss_series(log_history, "eval_loss")
    if not train and not evaluation:
        return None
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colors = {}
    for key, (steps, values) in sorted(train.items()):
        (line,) = axes.plot(steps, values, label=key, linewidth=1.8 if key == "loss" else 1.2)
        colors[key] = line.get_color()
    for key, (steps, values) in sorted(evaluation.items()):
        partner = key.removeprefix("eval_")
        axes.plot(steps, values, "o--", label=key, color=colors.get(partner), markersize=4, linewidth=1.0)
    values = [v for _, vals in [*train.values(), *evaluation.values()] for v in vals]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        axes.set_yscale("log")
    axes.set_xlabel("optimiser step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    if title:
        axes.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def _to_display(pixel_values: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(B, C, H, W) normalised pixels → (B, H, W, C) floats in [0, 1] (grey images repeated to RGB)."""
    channels = pixel_values.shape[1]
    mean_t = torch.tensor(mean[:channels], dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std[:channels], dtype=torch.float32).view(1, -1, 1, 1)
    images = (pixel_values.detach().float().cpu() * std_t + mean_t).clamp(0, 1)
    if channels == 1:
        images = images.repeat(1, 3, 1, 1)
    return images[:, :3].permute(0, 2, 3, 1).numpy()


def _mask_image(mask: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """(B, h*w) bool → (B, 1, h*p, w*p) float, 1 on masked pixels."""
    mask = mask.reshape(mask.shape[0], 1, *grid).float()
    return F.interpolate(mask, scale_factor=patch_size, mode="nearest")


# Per-patch z-scores are drawn as 0.5 + z * Z_SCORE_DISPLAY_SCALE (clipped): z = +-2 spans the grey range.
Z_SCORE_DISPLAY_SCALE = 0.25
RAW_PREDICTION_LABEL = "prediction, raw\n(per-patch z-scores)"
NORMALISED_TARGET_LABEL = "target, per-patch normalised\n(what the loss compares)"
DENORMALISED_LABEL = "prediction de-normalised\n(borrows each true patch's mean/std)"


def _z_display(patches: torch.Tensor, grid: tuple[int, int], patch_size: int, channels: int) -> np.ndarray:
    """(B, N, p·p·C) per-patch z-scores → (B, H, W, 3) in [0, 1] on a fixed scale (no statistics borrowed)."""
    images = unpatchify(patches, patch_size, grid, channels)
    images = (0.5 + Z_SCORE_DISPLAY_SCALE * images).clamp(0, 1)
    if channels == 1:
        images = images.repeat(1, 3, 1, 1)
    return images[:, :3].permute(0, 2, 3, 1).numpy()


def reconstruction_panels(
    pixel_values: torch.Tensor,
    bool_masked_pos: torch.Tensor,
    grid: tuple[int, int],
    patch_size: int,
    reconstruction: torch.Tensor,
    norm_pix_loss: bool = False,
    image_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    image_std: Sequence[float] = IMAGENET_DEFAULT_STD,
) -> list[tuple[str, np.ndarray]]:
    """The labelled (B, H, W, 3) arrays `plot_reconstruction` draws for a pixel-target model, left to right.

    Without `norm_pix_loss`: original | masked | reconstruction | reconstruction + visible. With it the model
    predicts per-patch standardised pixels, and the de-normalised picture borrows each true patch's mean and
    spread, so it looks plausible even for an untrained model (a zero prediction becomes each patch's flat mean
    colour). The figure therefore also shows the normalised target and the raw prediction on one fixed z-score
    scale (`0.5 + z / 4`), where an uninformative prediction stays flat grey:
    original | masked | target, per-patch normalised | prediction, raw | prediction de-normalised | + visible.

    Args:
        pixel_values: (B, C, H, W) normalised model input.
        bool_masked_pos: (B, N) bool, True = masked.
        grid: (h, w) patch grid.
        patch_size: p.
        reconstruction: (B, C, H, W) normalised pixels or (B, N, p·p·C) patch predictions (MAE layout).
        norm_pix_loss: The patch predictions are per-patch standardised (MAE's norm_pix_loss).
        image_mean / image_std: The input normalisation (undone for display).

    Returns:
        `[(label, (B, H, W, 3) floats in [0, 1]), ...]`.
    """
    batch, channels = pixel_values.shape[:2]
    num_patches = grid[0] * grid[1]
    original = _to_display(pixel_values, image_mean, image_std)
    mask_pixels = _mask_image(bool_masked_pos.reshape(batch, -1), grid, patch_size).permute(0, 2, 3, 1).numpy()
    masked = original * (1 - mask_pixels) + 0.5 * mask_pixels
    reconstruction = reconstruction.detach().float().cpu()
    raw_panels: list[tuple[str, np.ndarray]] = []
    label = "reconstruction"
    if reconstruction.dim() == 3:
        if reconstruction.shape[1] != num_patches:
            raise ValueError(f"reconstruction has {reconstruction.shape[1]} patches, expected {num_patches}.")
        if norm_pix_loss:
            patches = patchify(pixel_values.float(), patch_size)
            mean, var = patches.mean(dim=-1, keepdim=True), patches.var(dim=-1, keepdim=True)
            target = normalize_patches(patches, PATCH_NORM_EPS)
            raw_panels = [
                (NORMALISED_TARGET_LABEL, _z_display(target, grid, patch_size, channels)),
                (RAW_PREDICTION_LABEL, _z_display(reconstruction, grid, patch_size, channels)),
            ]
            reconstruction = reconstruction * (var + PATCH_NORM_EPS) ** 0.5 + mean
            label = DENORMALISED_LABEL
        reconstruction = unpatchify(reconstruction, patch_size, grid, channels)
    predicted = _to_display(reconstruction, image_mean, image_std)
    return [
        ("original", original),
        ("masked", masked),
        *raw_panels,
        (label, predicted),
        (f"{label.split(chr(10))[0]}\n+ visible patches", original * (1 - mask_pixels) + predicted * mask_pixels),
    ]


def plot_reconstruction(
    pixel_values: torch.Tensor,
    bool_masked_pos: torch.Tensor,
    path: str | os.PathLike,
    *,
    patch_size: int,
    reconstruction: torch.Tensor | None = None,
    norm_pix_loss: bool = False,
    predictions: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    image_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    image_std: Sequence[float] = IMAGENET_DEFAULT_STD,
    max_images: int = 4,
    title: str | None = None,
) -> Path:
    """Writes a grid PNG showing what a masked-image model sees and predicts, one row per image.

    Pixel-target models (pass `reconstruction`): the panels of `reconstruction_panels` (with `norm_pix_loss` the
    raw prediction and the normalised target are drawn beside the de-normalised prediction, and labelled as
    such). Feature-target models (pass `predictions` and `targets`): original | mask
    overlay | per-patch cosine similarity of prediction vs target (masked patches outlined).

    Args:
        pixel_values: (B, C, H, W) model input, normalised with `image_mean` / `image_std`.
        bool_masked_pos: (B, N) or (B, h, w), True = masked, N = (H/p)·(W/p).
        path: PNG file to write.
        patch_size: p.
        reconstruction: (B, C, H, W) normalised pixels or (B, N, p·p·C) patch predictions (MAE layout).
        norm_pix_loss: the patch predictions are per-patch standardised targets; they are shown raw and mapped
            back with each original patch's mean and (unbiased) variance, as MAE's visualisation does.
        predictions / targets: (B, N, D) predicted and target features.
        image_mean / image_std: the input normalisation (undone for display).
        max_images: rows to draw at most.
        title: optional figure title.

    Returns:
        The written path.
    """
    if (reconstruction is None) == (predictions is None or targets is None):
        raise ValueError(
            "Pass either `reconstruction` (pixel targets) or both `predictions` and `targets` (features)."
        )
    batch, _, height, width = pixel_values.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"Image size {height}x{width} is not divisible by patch_size={patch_size}.")
    grid = (height // patch_size, width // patch_size)
    num_patches = grid[0] * grid[1]
    mask = bool_masked_pos.reshape(batch, -1).bool().cpu()
    if mask.shape[1] != num_patches:
        raise ValueError(f"bool_masked_pos has {mask.shape[1]} patches, but the images have {num_patches}.")
    rows = min(batch, max_images)
    pixel_values, mask = pixel_values[:rows].detach().float().cpu(), mask[:rows]
    original = _to_display(pixel_values, image_mean, image_std)
    mask_pixels = _mask_image(mask, grid, patch_size).permute(0, 2, 3, 1).numpy()
    masked = original * (1 - mask_pixels) + 0.5 * mask_pixels

    if reconstruction is not None:
        panels = reconstruction_panels(
            pixel_values, mask, grid, patch_size, reconstruction[:rows], norm_pix_loss, image_mean, image_std
        )
        heat = None
    else:
        predictions, targets = predictions[:rows].detach().float().cpu(), targets[:rows].detach().float().cpu()
        if predictions.shape[:2] != (rows, num_patches) or predictions.shape != targets.shape:
            raise ValueError(
                f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} must both be "
                f"(B, {num_patches}, D)."
            )
        heat = F.cosine_similarity(predictions, targets, dim=-1).reshape(rows, *grid).numpy()
        panels = [("original", original), ("mask", masked), ("cosine(pred, target)", None)]

    figure = Figure(figsize=(2.4 * len(panels) + (0.6 if heat is not None else 0), 2.4 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, len(panels), squeeze=False)
    for row in range(rows):
        for column, (name, images) in enumerate(panels):
            axis = axes[row, column]
            axis.set_xticks([])
            axis.set_yticks([])
            if images is not None:
                axis.imshow(images[row])
            else:
                shown = axis.imshow(heat[row], cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
                for index in mask[row].nonzero().flatten().tolist():
                    r, c = divmod(index, grid[1])
                    axis.add_patch(_outline(c, r))
                masked_mean = heat[row].reshape(-1)[mask[row].numpy()].mean() if mask[row].any() else math.nan
                name = f"{name}\nmasked mean {masked_mean:.2f}"
            if row == 0 or images is None:
                axis.set_title(name, fontsize=8)
    if heat is not None:
        figure.colorbar(shown, ax=axes[:, -1].tolist(), shrink=0.8)
    if title:
        figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _outline(column: int, row: int) -> Rectangle:
    return Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=0.6)
