"""Small building blocks shared by several architectures (position embeddings, stochastic depth)."""

from .attention import eager_attention_forward
from .drop_path import DropPath, drop_path
from .inputs import patch_grid_of
from .position import (
    get_2d_sincos_pos_embed,
    interpolate_pos_embed,
    num_relative_distances,
    relative_position_index,
)

__all__ = [
    "DropPath",
    "drop_path",
    "eager_attention_forward",
    "get_2d_sincos_pos_embed",
    "interpolate_pos_embed",
    "num_relative_distances",
    "patch_grid_of",
    "relative_position_index",
]
