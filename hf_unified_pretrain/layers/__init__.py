"""Small building blocks shared by several architectures (position embeddings, stochastic depth)."""

from .attention import eager_attention_forward
from .dcnv3 import dcnv3_core
from .drop_path import DropPath, drop_path
from .forward_kwargs import TRANSFORMERS_FORWARD_KWARGS, strict_forward_kwargs
from .inputs import (
    RAW_PIXEL_THRESHOLD,
    check_conv_pixels,
    check_pixel_dtype_and_values,
    check_pixel_values,
    patch_grid_of,
)
from .position import (
    ResizePositionTableOnLoad,
    check_position_grid,
    get_2d_sincos_pos_embed,
    grid_of_size,
    interpolate_pos_embed,
    num_relative_distances,
    register_position_table_resizing,
    relative_position_index,
    resize_relative_position_bias_table,
)

__all__ = [
    "RAW_PIXEL_THRESHOLD",
    "TRANSFORMERS_FORWARD_KWARGS",
    "DropPath",
    "ResizePositionTableOnLoad",
    "check_conv_pixels",
    "check_pixel_dtype_and_values",
    "check_pixel_values",
    "check_position_grid",
    "dcnv3_core",
    "drop_path",
    "eager_attention_forward",
    "get_2d_sincos_pos_embed",
    "grid_of_size",
    "interpolate_pos_embed",
    "num_relative_distances",
    "patch_grid_of",
    "register_position_table_resizing",
    "relative_position_index",
    "resize_relative_position_bias_table",
    "strict_forward_kwargs",
]
