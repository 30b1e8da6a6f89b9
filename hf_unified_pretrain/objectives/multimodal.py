"""Dense multi-modal reconstruction losses (MultiMAE): per-pixel losses scored on masked patches only.

Every loss follows MultiMAE's reduction: per-pixel loss (averaged over channels) times the patch mask upsampled to
pixels, summed per sample and divided by that sample's number of scored pixels, then `nanmean` over the batch (a
sample without masked patches does not count). Pixels flagged invalid (`valid_mask`) and ignored labels are removed
from both the numerator and the denominator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def standardize_depth(
    depth: torch.Tensor, trim_fraction: float = 0.1, eps: float = 1e-6, valid_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-image depth standardisation with outlier trimming (MultiMAE's `standardize_depth`).

    The mean and (unbiased) variance come from each image's values after dropping the lowest and the highest
    `trim_fraction` of them; the whole map is then shifted and scaled. Invalid pixels are left out of the statistics
    and set to 0 in the output.

    Args:
        depth: (B, 1, H, W) float depth (any unit or bit depth).
        trim_fraction: Fraction dropped at each end before computing the statistics.
        eps: Added to the variance.
        valid_mask: Optional (B, H, W) or (B, 1, H, W) bool, True where the depth is valid.

    Returns:
        (B, 1, H, W) standardised depth.
    """
    if depth.dim() != 4 or depth.shape[1] != 1:
        raise ValueError(f"depth must have shape (batch, 1, height, width), got {tuple(depth.shape)}.")
    flat = depth.flatten(1)
    if valid_mask is None:
        values = torch.sort(flat, dim=1).values
        count = values.shape[1]
        trimmed = values[:, int(trim_fraction * count) : int((1 - trim_fraction) * count)]
        mean, var = trimmed.mean(dim=1), trimmed.var(dim=1)
        return (depth - mean[:, None, None, None]) / torch.sqrt(var[:, None, None, None] + eps)
    valid = valid_mask.reshape(flat.shape).bool()
    output = torch.zeros_like(depth)
    for index in range(depth.shape[0]):
        values = torch.sort(flat[index][valid[index]]).values
        count = values.numel()
        trimmed = values[int(trim_fraction * count) : int((1 - trim_fraction) * count)]
        if trimmed.numel() < 2:
            continue
        standardized = (depth[index] - trimmed.mean()) / torch.sqrt(trimmed.var() + eps)
        output[index] = torch.where(valid[index].reshape(depth[index].shape), standardized, 0.0)
    return output


def normalize_dense_patches(images: torch.Tensor, patch_size: int, eps: float = 1e-6) -> torch.Tensor:
    """Standardises every p x p patch of (B, C, H, W) images over its channels and pixels (MAE's norm_pix target,
    unbiased variance as the original)."""
    _check_divisible(images, patch_size, "images")
    batch, channels, height, width = images.shape
    grid_h, grid_w = height // patch_size, width // patch_size
    patches = images.reshape(batch, channels, grid_h, patch_size, grid_w, patch_size)
    patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(batch, grid_h, grid_w, -1)
    mean, var = patches.mean(dim=-1, keepdim=True), patches.var(dim=-1, keepdim=True)
    patches = (patches - mean) / torch.sqrt(var + eps)
    patches = patches.reshape(batch, grid_h, grid_w, channels, patch_size, patch_size)
    return patches.permute(0, 3, 1, 4, 2, 5).reshape(batch, channels, height, width)


def _check_divisible(images: torch.Tensor, patch_size: int, name: str) -> None:
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape (batch, channels, height, width), got {tuple(images.shape)}.")
    if patch_size < 1 or images.shape[-2] % patch_size or images.shape[-1] % patch_size:
        raise ValueError(
            f"{name} of size {images.shape[-2]}x{images.shape[-1]} is not divisible by the patch size {patch_size}."
        )


def _pixel_weights(
    bool_masked_pos: torch.Tensor | None, batch: int, height: int, width: int, patch_size: int, device
) -> torch.Tensor:
    if bool_masked_pos is None:
        return torch.ones(batch, height, width, device=device)
    grid_h, grid_w = height // patch_size, width // patch_size
    if tuple(bool_masked_pos.shape) not in ((batch, grid_h * grid_w), (batch, grid_h, grid_w)):
        raise ValueError(
            f"bool_masked_pos must have shape (batch, num_patches) = {(batch, grid_h * grid_w)} for a {height}x{width} "
            f"prediction with patch size {patch_size}, got {tuple(bool_masked_pos.shape)}."
        )
    mask = bool_masked_pos.reshape(batch, grid_h, grid_w).float()
    return mask.repeat_interleave(patch_size, dim=1).repeat_interleave(patch_size, dim=2)


def _reduce(pixel_loss: torch.Tensor, weights: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    if weights.sum() == 0:
        return anchor.sum() * 0.0  # keeps the graph (every parameter still gets a zero gradient)
    per_sample = (pixel_loss * weights).flatten(1).sum(dim=1) / weights.flatten(1).sum(dim=1)
    return per_sample.nanmean()


def masked_dense_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    bool_masked_pos: torch.Tensor | None,
    patch_size: int,
    *,
    loss_type: str = "mse",
    normalize_target: bool = False,
    norm_eps: float = 1e-6,
    valid_mask: torch.Tensor | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """MultiMAE's masked dense loss for one task.

    Args:
        predictions: (B, C, H, W) predictions (logits for "cross_entropy").
        targets: (B, C, H, W) float targets, or (B, H, W) class indices for "cross_entropy".
        bool_masked_pos: (B, (H/p)*(W/p)) bool, True = masked = scored; None scores every pixel.
        patch_size: p, the patch side at this task's resolution.
        loss_type: "mse", "l1" or "cross_entropy".
        normalize_target: Per-patch standardised targets (MultiMAE's norm_rgb task).
        norm_eps: Epsilon of that standardisation.
        valid_mask: Optional (B, H, W) bool, False for pixels never scored (e.g. invalid depth).
        ignore_index: Class index never scored ("cross_entropy").

    Returns:
        Scalar loss.
    """
    _check_divisible(predictions, patch_size, "predictions")
    batch, _, height, width = predictions.shape
    weights = _pixel_weights(bool_masked_pos, batch, height, width, patch_size, predictions.device)
    if valid_mask is not None and valid_mask.numel() != batch * height * width:
        raise ValueError(
            f"valid_mask must have shape (batch, height, width) = {(batch, height, width)}, got "
            f"{tuple(valid_mask.shape)}."
        )
    if valid_mask is not None:
        weights = weights * valid_mask.reshape(batch, height, width).to(weights.dtype)
    if loss_type == "cross_entropy":
        if targets.shape != (batch, height, width):
            raise ValueError(
                f"Segmentation targets must have shape (batch, height, width) = {(batch, height, width)} (the "
                f"prediction's resolution), got {tuple(targets.shape)}."
            )
        pixel_loss = F.cross_entropy(predictions, targets.long(), reduction="none", ignore_index=ignore_index)
        weights = weights * (targets != ignore_index).to(weights.dtype)
        return _reduce(pixel_loss, weights, predictions)
    if targets.shape != predictions.shape:
        raise ValueError(
            f"Targets must have the predictions' shape {tuple(predictions.shape)}, got {tuple(targets.shape)}."
        )
    if normalize_target:
        targets = normalize_dense_patches(targets, patch_size, norm_eps)
    if loss_type == "mse":
        pixel_loss = F.mse_loss(predictions, targets, reduction="none").mean(dim=1)
    elif loss_type == "l1":
        pixel_loss = F.l1_loss(predictions, targets, reduction="none").mean(dim=1)
    else:
        raise ValueError(f"loss_type must be 'mse', 'l1' or 'cross_entropy', got {loss_type!r}.")
    if valid_mask is not None:
        pixel_loss = torch.where(weights > 0, pixel_loss, torch.zeros_like(pixel_loss))  # NaN targets stay out
    return _reduce(pixel_loss, weights, predictions)


__all__ = ["masked_dense_loss", "normalize_dense_patches", "standardize_depth"]
