"""Checks of model inputs shared by every patch-based architecture."""

from __future__ import annotations

import math

import torch

# Normalised pixels stay within a few units of 0 ((1 - 0.406) / 0.225 = 2.6 for ImageNet statistics); a
# non-negative batch reaching past this is raw 0..255 intensities that skipped the image processor.
RAW_PIXEL_THRESHOLD = 25.0
_PROCESSOR_FIX = (
    "run the images through the model's image processor (it rescales to [0, 1] and normalises with mean/std)"
)


def _is_traced() -> bool:
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def check_pixel_dtype_and_values(pixel_values: torch.Tensor, dtype: torch.dtype, *, training: bool = False) -> None:
    """Raises a clear error for pixels the model cannot use as they are.

    Accepted: floating pixels of the model's `dtype`, float32 pixels for a 16-bit model (what image processors
    return; the model casts them), any floating pixels under autocast. Rejected: integer pixels, other floating
    mismatches (float64 from numpy, bf16 pixels for a float32 model, ...) and, through `check_pixel_values`,
    NaN/inf values and raw 0..255 intensities.

    The dtype checks read only metadata. The value scan needs one host read, which on an accelerator is a sync
    that stalls kernel queueing once per forward; so it is skipped for a module in training mode on a non-CPU
    device (`PretrainingTrainer` scans the first training batch once instead, and non-finite losses stop
    training). Inference (`from_pretrained` returns eval mode) and CPU runs always scan.

    Args:
        pixel_values: (B, C, H, W) images.
        dtype: The dtype of the model's patch projection.
        training: The calling module's `training` flag.
    """
    if not pixel_values.dtype.is_floating_point:
        raise TypeError(
            f"pixel_values has dtype {pixel_values.dtype}: the model expects normalised floating pixels, not raw "
            f"integer intensities. Fix: {_PROCESSOR_FIX}, or use `(pixel_values / 255 - mean) / std` as a float "
            "tensor."
        )
    device = pixel_values.device.type
    autocast = torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)
    upcast_input = pixel_values.dtype == torch.float32 and dtype in (torch.float16, torch.bfloat16)
    if pixel_values.dtype != dtype and not autocast and not upcast_input:
        raise TypeError(
            f"pixel_values has dtype {pixel_values.dtype} but the model's weights are {dtype}. Fix: cast the input "
            f"with `pixel_values.to({dtype})` (numpy arrays are float64 by default), or convert the model with "
            f"`model.to({pixel_values.dtype})`, or run under torch.autocast."
        )
    if not (training and device != "cpu"):
        check_pixel_values(pixel_values)


def check_pixel_values(pixel_values: torch.Tensor) -> None:
    """Rejects NaN/inf pixels and non-negative pixels above `RAW_PIXEL_THRESHOLD` (raw 0..255 intensities that were
    never normalised). Costs one host read of the batch's min and max; a no-op while tracing or compiling.

    Args:
        pixel_values: Floating images of any shape.
    """
    if _is_traced() or pixel_values.numel() == 0:
        return
    low, high = (value.item() for value in torch.aminmax(pixel_values.detach()))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(
            f"pixel_values contains NaN or infinite values (min {low}, max {high}). Fix: check the data pipeline "
            "(corrupt images, division by a zero std) before calling the model."
        )
    if low >= 0 and high > RAW_PIXEL_THRESHOLD:
        raise ValueError(
            f"pixel_values lie in [{low:g}, {high:g}], which looks like raw 0..255 intensities, but the model expects "
            f"normalised pixels (roughly within [-3, 3]). Fix: {_PROCESSOR_FIX}."
        )


_LAYOUT = "(batch_size, num_channels, height, width)"


def _check_image_batch(pixel_values: torch.Tensor, num_channels: int, name: str) -> torch.Size:
    """Checks rank, batch size and channel count of an image batch; returns its (B, C, H, W) shape."""
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"`{name}` must have shape {_LAYOUT}, got {shape}.")
    if pixel_values.shape[0] == 0:
        raise ValueError(
            f"`{name}` is an empty batch (batch_size 0). Fix: skip empty batches, or check that the data collator did "
            "not drop every example (e.g. all images unreadable)."
        )
    channels = pixel_values.shape[1]
    if channels != num_channels:
        if num_channels == 3:
            fix = (
                "prepare the images with the model's image processor (its do_convert_rgb=True turns grayscale, RGBA "
                "and CMYK images into RGB) or convert them yourself (PIL: `image.convert('RGB')`)"
            )
        else:
            # Our processors convert to RGB by default, which a non-RGB model cannot take.
            fix = (
                f"feed {num_channels}-channel images: an image processor with do_convert_rgb=False and "
                f"{num_channels}-value image_mean/image_std"
            )
        raise ValueError(
            f"`{name}` has {channels} channels but the model expects {num_channels} (config.num_channels). Fix: "
            f"{fix}; or build the model with num_channels={channels}."
        )
    return pixel_values.shape


def check_conv_pixels(
    pixel_values: torch.Tensor | None,
    *,
    num_channels: int,
    min_size: int,
    model_name: str,
    why_min_size: str,
    image_size: int | None = None,
    dtype: torch.dtype | None = None,
    training: bool = False,
    name: str = "pixel_values",
) -> None:
    """Checks an image batch for a convolutional encoder: rank, batch, channel count, smallest side, then (with
    `dtype`) the dtype and the values (`check_pixel_dtype_and_values`). Any size at least `min_size` is accepted.

    Args:
        pixel_values: (B, C, H, W) images.
        num_channels: C the model was built for (`config.num_channels`).
        min_size: Smallest height and width the encoder can reduce to a valid output.
        model_name: Named in the errors ("InternImage", "AMDIM", ...).
        why_min_size: Why smaller images fail, for the error (e.g. "the last stage runs at stride 32").
        image_size: The size the model's image processor resizes to, suggested in the error when given.
        dtype: The model's parameter dtype; None skips the dtype and value checks.
        training: The calling module's `training` flag (see `check_pixel_dtype_and_values`).
        name: The argument's name in the errors (a model may take several image batches).

    Raises:
        ValueError naming the problem and the fix (TypeError for dtypes).
    """
    if pixel_values is None:
        raise ValueError(f"{model_name} needs `{name}` of shape {_LAYOUT}.")
    _, _, height, width = _check_image_batch(pixel_values, num_channels, name)
    if height < min_size or width < min_size:
        resized = f" (the image processor resizes to {image_size})" if image_size else ""
        raise ValueError(
            f"`{name}` are {height}x{width}, smaller than {min_size}x{min_size}: {model_name} {why_min_size}. Fix: "
            f"resize or pad the images to at least {min_size}x{min_size} pixels{resized}."
        )
    if dtype is not None:
        check_pixel_dtype_and_values(pixel_values, dtype, training=training)


def patch_grid_of(
    pixel_values: torch.Tensor,
    num_channels: int,
    patch_size: int,
    dtype: torch.dtype | None = None,
    *,
    training: bool = False,
) -> tuple[int, int]:
    """The (H/p, W/p) patch grid of a batch, after checking its rank, size, channel count and divisibility.

    Args:
        pixel_values: (B, C, H, W) images, B >= 1.
        num_channels: C the model was built for (`config.num_channels`).
        patch_size: p.
        dtype: The model's parameter dtype. Pass it once per forward, where the pixels enter the patch projection:
            the dtype and the values are then checked too (`check_pixel_dtype_and_values`).
        training: The calling module's `training` flag (skips the value scan on accelerators, see
            `check_pixel_dtype_and_values`).

    Returns:
        (H / p, W / p). Raises a ValueError (TypeError for dtypes) naming the problem and the fix otherwise.
    """
    _, _, height, width = _check_image_batch(pixel_values, num_channels, "pixel_values")
    if height == 0 or width == 0:
        raise ValueError(f"pixel_values holds empty images ({height}x{width}): resize them to the model's image_size.")
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"Image size {height}x{width} is not divisible by the patch size {patch_size}: resize, crop or pad the "
            f"images to a multiple of {patch_size} (the image processor does this)."
        )
    if dtype is not None:
        check_pixel_dtype_and_values(pixel_values, dtype, training=training)
    return height // patch_size, width // patch_size
