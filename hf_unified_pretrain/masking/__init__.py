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
from .mixing import block_mix_sources, mix_soft_labels, source_fractions, source_index_to_pixels
from .validation import validate_bool_masked_pos, validate_mask_ratio

__all__ = [
    "BEIT_MIN_ASPECT",
    "BEIT_MIN_BLOCK_TOKENS",
    "BlockMaskGenerator",
    "MaskIds",
    "RandomMaskGenerator",
    "block_mask",
    "block_mix_sources",
    "dirichlet_multimodal_mask",
    "expand_mask_units",
    "gather_tokens",
    "ids_to_mask",
    "mask_to_ids",
    "mix_soft_labels",
    "num_masked_tokens",
    "random_mask",
    "source_fractions",
    "source_index_to_pixels",
    "validate_bool_masked_pos",
    "validate_mask_ratio",
]
