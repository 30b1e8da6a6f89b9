"""Input checks shared by the masking functions and every model that accepts a mask."""

from __future__ import annotations

import torch


def validate_mask_ratio(mask_ratio: float) -> float:
    """Raises a ValueError unless `0 < mask_ratio < 1`; returns it unchanged."""
    if not isinstance(mask_ratio, (int, float)) or not 0.0 < float(mask_ratio) < 1.0:
        raise ValueError(
            f"mask_ratio must be strictly between 0 and 1 (a fraction of tokens to mask), got {mask_ratio!r}. "
            "To encode every token, pass no mask (the base model never masks unless asked)."
        )
    return float(mask_ratio)


def validate_bool_masked_pos(
    bool_masked_pos: torch.Tensor, batch_size: int, num_tokens: int, name: str = "bool_masked_pos"
) -> torch.Tensor:
    """Checks a mask against the expected batch and token counts and returns it as (B, N) bool.

    Accepts (B, N) or (B, h, w) with h*w == N; integer masks holding only 0/1 are converted. Floating masks are
    rejected because they usually mean a soft mask or a mix-up weight was passed by mistake.

    Args:
        bool_masked_pos: The mask, True = masked.
        batch_size: Expected B.
        num_tokens: Expected N (patches of the input image).
        name: Argument name used in error messages.

    Returns:
        (B, N) bool tensor.
    """
    if not isinstance(bool_masked_pos, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of dtype torch.bool, got {type(bool_masked_pos).__name__}.")
    if bool_masked_pos.dtype.is_floating_point or bool_masked_pos.dtype.is_complex:
        raise TypeError(
            f"{name} must have dtype torch.bool (True = masked), got {bool_masked_pos.dtype}; "
            f"convert it with `{name}.bool()` if it holds 0/1 values."
        )
    if bool_masked_pos.dtype != torch.bool:
        if bool_masked_pos.numel() and not torch.isin(bool_masked_pos, bool_masked_pos.new_tensor([0, 1])).all():
            raise ValueError(f"{name} of integer dtype must hold only 0 and 1 (1 = masked).")
        bool_masked_pos = bool_masked_pos.bool()
    if bool_masked_pos.dim() == 3:
        bool_masked_pos = bool_masked_pos.flatten(1)
    if bool_masked_pos.dim() != 2 or tuple(bool_masked_pos.shape) != (batch_size, num_tokens):
        raise ValueError(
            f"{name} must have shape (batch_size, num_patches) = ({batch_size}, {num_tokens}) for this input "
            f"(or (batch_size, h, w) with h*w = {num_tokens}), got {tuple(bool_masked_pos.shape)}. "
            "The number of patches follows from the image size and the patch size."
        )
    return bool_masked_pos
