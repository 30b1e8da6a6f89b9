"""Position information: fixed 2-D sin-cos embeddings, relative-position indices, and resizing of learned tables."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from transformers.conversion_mapping import get_checkpoint_conversion_mapping, register_checkpoint_conversion_mapping
from transformers.core_model_loading import ConversionOps, WeightConverter


def _grid(grid_size: tuple[int, int] | int) -> tuple[int, int]:
    return (grid_size, grid_size) if isinstance(grid_size, int) else (int(grid_size[0]), int(grid_size[1]))


def _sincos_1d(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.reshape(-1, 1).double() * omega.reshape(1, -1)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def get_2d_sincos_pos_embed(
    embed_dim: int, grid_size: tuple[int, int] | int, *, add_cls_token: bool = False, row_first: bool = False
) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding (computed in float64, returned as float32).

    Half of the channels encode the column and half the row. MAE and iTPN put the column first (`row_first=False`);
    MultiMAE/MoCo-v3 put the row first.

    Args:
        embed_dim: D, divisible by 4.
        grid_size: (H, W) of the token grid, or one int.
        add_cls_token: Prepend an all-zero row for a [CLS] token.
        row_first: Which coordinate the first half of the channels encodes.

    Returns:
        (H*W, D), or (1 + H*W, D) with `add_cls_token`, tokens in row-major order.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for a 2-D sin-cos embedding, got {embed_dim}.")
    height, width = _grid(grid_size)
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    first, second = (rows, cols) if row_first else (cols, rows)
    embed = torch.cat([_sincos_1d(embed_dim // 2, first), _sincos_1d(embed_dim // 2, second)], dim=1)
    if add_cls_token:
        embed = torch.cat([torch.zeros(1, embed_dim, dtype=embed.dtype), embed], dim=0)
    return embed.float()


def num_relative_distances(grid_size: tuple[int, int] | int, *, with_cls_token: bool) -> int:
    """Rows of a relative-position bias table: every 2-D offset, plus 3 entries for [CLS] pairs (BEiT)."""
    height, width = _grid(grid_size)
    return (2 * height - 1) * (2 * width - 1) + (3 if with_cls_token else 0)


def relative_position_index(grid_size: tuple[int, int] | int, *, with_cls_token: bool) -> torch.Tensor:
    """Index into a relative-position bias table for every (query, key) token pair.

    Args:
        grid_size: (H, W) of the patch grid.
        with_cls_token: BEiT layout: token 0 is [CLS], with separate table rows for cls→patch, patch→cls, cls→cls.

    Returns:
        (N, N) long with N = H*W (+1 with a [CLS] token).
    """
    height, width = _grid(grid_size)
    coords = torch.stack(torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")).flatten(1)
    offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    index = (offsets[..., 0] + height - 1) * (2 * width - 1) + (offsets[..., 1] + width - 1)
    if not with_cls_token:
        return index
    size = num_relative_distances(grid_size, with_cls_token=True)
    full = torch.zeros(height * width + 1, height * width + 1, dtype=index.dtype)
    full[1:, 1:] = index
    full[0, :] = size - 3
    full[:, 0] = size - 2
    full[0, 0] = size - 1
    return full


def interpolate_pos_embed(
    pos_embed: torch.Tensor,
    old_grid: tuple[int, int] | int,
    new_grid: tuple[int, int] | int,
    *,
    mode: str = "bicubic",
    num_prefix_tokens: int = 0,
    legacy_scale_factor: bool = False,
) -> torch.Tensor:
    """Resizes a learned position embedding to another token grid.

    Args:
        pos_embed: (1, P + H*W, D) with P prefix tokens (e.g. [CLS]) that are kept as they are.
        old_grid: (H, W) of `pos_embed`.
        new_grid: Target (H', W').
        mode: Interpolation mode of `F.interpolate`.
        num_prefix_tokens: P.
        legacy_scale_factor: Resample with `scale_factor=((H' + 0.1) / H, (W' + 0.1) / W)` instead of `size=(H', W')`,
            as DINO-derived originals (HiViT, iTPN) do. PyTorch then maps coordinates with the slightly larger
            factor, so values differ from a size-based resize, and the grid is resampled even when it is unchanged.

    Returns:
        (1, P + H'*W', D).
    """
    old_h, old_w = _grid(old_grid)
    new_h, new_w = _grid(new_grid)
    if (old_h, old_w) == (new_h, new_w) and not legacy_scale_factor:
        return pos_embed
    prefix, grid_tokens = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = grid_tokens.shape[-1]
    grid_tokens = grid_tokens.reshape(1, old_h, old_w, dim).permute(0, 3, 1, 2).float()
    if legacy_scale_factor:
        scale = ((new_h + 0.1) / old_h, (new_w + 0.1) / old_w)
        grid_tokens = F.interpolate(grid_tokens, scale_factor=scale, mode=mode)
        if tuple(grid_tokens.shape[-2:]) != (new_h, new_w):
            raise ValueError(
                f"Resizing position embeddings from {old_h}x{old_w} gave {tuple(grid_tokens.shape[-2:])}, expected "
                f"{(new_h, new_w)}."
            )
    else:
        grid_tokens = F.interpolate(grid_tokens, size=(new_h, new_w), mode=mode, align_corners=False)
    grid_tokens = grid_tokens.to(pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, new_h * new_w, dim)
    return torch.cat([prefix, grid_tokens], dim=1)


def resize_relative_position_bias_table(
    table: torch.Tensor,
    old_grid: tuple[int, int] | int,
    new_grid: tuple[int, int] | int,
    *,
    num_extra_tokens: int = 0,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Resizes a relative-position bias table to the offsets of another patch grid.

    The (2H-1)*(2W-1) offset rows form a (2H-1, 2W-1) image per head (row offset major, as `relative_position_index`
    indexes them), which is resized to (2H'-1, 2W'-1); the trailing rows of special-token pairs (BEiT: cls→patch,
    patch→cls, cls→cls) are kept as they are.

    Args:
        table: ((2H-1)*(2W-1) + E, heads).
        old_grid: (H, W) the table was built for.
        new_grid: Target (H', W').
        num_extra_tokens: E, rows after the offsets (3 with a [CLS] token as in BEiT, 0 for HiViT/Swin-like tables).
        mode: Interpolation mode of `F.interpolate` (BEiT's transformers port: bilinear).

    Returns:
        ((2H'-1)*(2W'-1) + E, heads); `table` itself when the grids are equal.
    """
    old_h, old_w = _grid(old_grid)
    new_h, new_w = _grid(new_grid)
    num_offsets = (2 * old_h - 1) * (2 * old_w - 1)
    if table.dim() != 2 or table.shape[0] != num_offsets + num_extra_tokens:
        raise ValueError(
            f"A relative-position bias table for a {old_h}x{old_w} grid with {num_extra_tokens} extra rows has shape "
            f"({num_offsets + num_extra_tokens}, heads), got {tuple(table.shape)}."
        )
    if (old_h, old_w) == (new_h, new_w):
        return table
    offsets = table[:num_offsets].reshape(1, 2 * old_h - 1, 2 * old_w - 1, -1).permute(0, 3, 1, 2)
    offsets = F.interpolate(offsets.float(), size=(2 * new_h - 1, 2 * new_w - 1), mode=mode, align_corners=False)
    offsets = offsets.to(table.dtype).permute(0, 2, 3, 1).reshape((2 * new_h - 1) * (2 * new_w - 1), -1)
    return torch.cat([offsets, table[num_offsets:]], dim=0)


def grid_of_size(num_cells: int, like: tuple[int, int] | int) -> tuple[int, int]:
    """The (H, W) grid of `num_cells` cells: square when possible, else with the aspect ratio of `like`.

    Checkpoints store position tables flat, without their grid; this recovers it (e.g. to resize a table saved at
    another image size).

    Args:
        num_cells: H*W.
        like: A grid whose aspect ratio to try when `num_cells` is no square.

    Returns:
        (H, W). Raises a ValueError when neither shape fits.
    """
    side = math.isqrt(num_cells)
    if side * side == num_cells:
        return side, side
    like_h, like_w = _grid(like)
    height = math.isqrt(num_cells * like_h // like_w)
    for candidate in (height, height + 1):
        if candidate > 0 and num_cells % candidate == 0 and candidate * like_w == (num_cells // candidate) * like_h:
            return candidate, num_cells // candidate
    raise ValueError(
        f"Cannot tell the grid of a position table with {num_cells} cells: it is neither square nor of the aspect "
        f"ratio {like_h}:{like_w} of the model's grid."
    )


def check_position_grid(
    grid_size: tuple[int, int], trained_grid: tuple[int, int] | int, *, interpolate_pos_encoding: bool, patch_size: int
) -> None:
    """Raises a ValueError naming `interpolate_pos_encoding` when an input's grid differs from the position tables'.

    Args:
        grid_size: (h, w) patch grid of the input.
        trained_grid: (H, W) grid the model's position tables are built for (`config.image_size // patch_size`).
        interpolate_pos_encoding: The forward's flag; when True any grid is accepted.
        patch_size: Pixels per patch side, for the message.
    """
    trained_h, trained_w = _grid(trained_grid)
    if interpolate_pos_encoding or (int(grid_size[0]), int(grid_size[1])) == (trained_h, trained_w):
        return
    raise ValueError(
        f"The input is {grid_size[0] * patch_size}x{grid_size[1] * patch_size} pixels ({grid_size[0]}x{grid_size[1]} "
        f"patches) but the position tables were built for {trained_h * patch_size}x{trained_w * patch_size} "
        f"(config.image_size). Pass `interpolate_pos_encoding=True` to interpolate them to the input's grid (or set "
        "config.interpolate_pos_encoding=True where the caller cannot pass it, e.g. a DETR head), resize the images, "
        "or build the model with the input's image_size (checkpoints of another size are interpolated on load)."
    )


class ResizePositionTableOnLoad(ConversionOps):
    """Weight-loading step that fits a checkpoint's position table to the model's grid.

    When the shapes differ (a checkpoint trained at another `image_size`), the module owning the table resizes it with
    its `resize_checkpoint_position_table(name, tensor)`; that module decides the layout (prefix tokens, extra rows,
    fixed sin-cos tables) and whether its config allows it. Equal shapes pass through, so the step is also its own
    reverse when saving.
    """

    @torch.no_grad()
    def convert(
        self, input_dict: dict[str, Any], source_patterns: list[str], target_patterns: list[str], **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        tensors = next(iter(input_dict.values()))
        tensor = tensors[0] if isinstance(tensors, list) else tensors
        model, name = kwargs.get("model"), kwargs.get("full_layer_name")
        if model is not None and name is not None:
            module_path, _, param_name = name.rpartition(".")
            module = model.get_submodule(module_path) if module_path else model
            expected = getattr(module, param_name, None)
            resize = getattr(module, "resize_checkpoint_position_table", None)
            if resize is not None and expected is not None and tuple(tensor.shape) != tuple(expected.shape):
                tensor = resize(param_name, tensor)
        # The full parameter name: the (regex) target pattern is not a literal part of it.
        return {name if name is not None else target_patterns[0]: tensor}

    @property
    def reverse_op(self) -> ConversionOps:
        return ResizePositionTableOnLoad()


def register_position_table_resizing(
    model_type: str, table_names: tuple[str, ...] = ("position_embeddings", "relative_position_bias_table")
) -> None:
    """Makes `from_pretrained` of every model of `model_type` resize position tables saved for another grid.

    Adds one `ResizePositionTableOnLoad` converter, matching any of the table names and keeping the key, to
    transformers' checkpoint conversion mapping of the model type (keeping conversions registered before; calling it
    again changes nothing). One pattern for all names, so that a config without one kind of table still matches.

    Args:
        model_type: `config.model_type`.
        table_names: Parameter names (last key component) of the position tables.
    """
    pattern = "(" + "|".join(table_names) + ")"
    existing = get_checkpoint_conversion_mapping(model_type) or []
    if any(pattern in transform._original_source_patterns for transform in existing):
        return
    converter = WeightConverter(pattern, r"\1", operations=[ResizePositionTableOnLoad()])
    register_checkpoint_conversion_mapping(model_type, [*existing, converter], overwrite=True)
