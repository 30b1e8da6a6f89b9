"""Masking: one convention everywhere, `bool_masked_pos` True = masked, shape (B, N) row-major."""

from .generators import (
    BEIT_MIN_ASPECT,
    BEIT_MIN_BLOCK_TOKENS,
    BlockMaskGenerator,
    RandomMaskGenerator,
    block_mask,
    dirichlet_multimodal_mask,
    expand_mask_units,
    num_masked_tokens,
    random_mask,
)
from .ids import MaskIds, gather_tokens, ids_to_mask, mask_to_ids
from .validation import validate_bool_masked_pos, validate_mask_ratio

__all__ = [
    "BEIT_MIN_ASPECT",
    "BEIT_MIN_BLOCK_TOKENS",
    "BlockMaskGenerator",
    "MaskIds",
    "RandomMaskGenerator",
    "block_mask",
    "dirichlet_multimodal_mask",
    "expand_mask_units",
    "gather_tokens",
    "ids_to_mask",
    "mask_to_ids",
    "num_masked_tokens",
    "random_mask",
    "validate_bool_masked_pos",
    "validate_mask_ratio",
]
