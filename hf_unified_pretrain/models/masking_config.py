"""The masking fields every pre-training config shares, with one rule and one validation for all of them.

Fields (same names and meaning in every model config):

- `mask_ratio` (float | None): fraction of patches to mask, in (0, 1); the count follows the input resolution;
- `num_masking_patches` (int | None): exact number of masked patches; wins over `mask_ratio` when set;
- `mask_min_block_tokens` (int), `mask_min_aspect` (float), `mask_max_aspect` (float | None): BEiT block masking,
  smallest block area, smallest aspect ratio, largest aspect ratio (None: `1 / mask_min_aspect`).
"""

from __future__ import annotations

from ..masking import num_masked_tokens


class MaskingConfigMixin:
    """Methods for configs holding the five masking fields; it adds no field itself (mix it into dataclass configs)."""

    def mask_grid(self, grid_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """The (h, w) patch grid a mask generator is built for: `grid_size` when given, else the config's own
        `grid_size` at `image_size` (an int side or an (h, w) pair)."""
        if grid_size is None:
            grid_size = self.grid_size
            return (grid_size, grid_size) if isinstance(grid_size, int) else (int(grid_size[0]), int(grid_size[1]))
        if not (isinstance(grid_size, (tuple, list)) and len(grid_size) == 2):
            raise TypeError(f"grid_size must be a (height, width) patch grid, got {grid_size!r}.")
        return int(grid_size[0]), int(grid_size[1])

    def num_masked_for(self, num_tokens: int) -> int:
        """Patches to mask for an input with `num_tokens` patches: `num_masking_patches` if set, else `mask_ratio`.

        The fit to the input is checked here, not when the config is built, so a config can be resized freely.
        """
        if self.num_masking_patches is not None:
            if self.num_masking_patches >= num_tokens:
                raise ValueError(
                    f"num_masking_patches={self.num_masking_patches} does not fit an input with {num_tokens} "
                    "patches: lower it, or set it to None and use `mask_ratio` so that the count follows the "
                    "resolution."
                )
            return self.num_masking_patches
        if self.mask_ratio is None:
            raise ValueError("The config sets neither num_masking_patches nor mask_ratio: set one of them.")
        return num_masked_tokens(num_tokens, self.mask_ratio)

    def check_masking_fields(self) -> None:
        """Raises a ValueError naming the masking field that is out of range (called by the config validators)."""
        if self.mask_ratio is not None and not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie in (0, 1) (or be None), got {self.mask_ratio}.")
        if self.num_masking_patches is not None and self.num_masking_patches < 1:
            raise ValueError(f"num_masking_patches must be at least 1 (or None), got {self.num_masking_patches}.")
        if self.mask_ratio is None and self.num_masking_patches is None:
            raise ValueError("Set mask_ratio or num_masking_patches (an exact count that wins over the ratio).")
        if self.mask_min_block_tokens < 1:
            raise ValueError(f"mask_min_block_tokens must be at least 1, got {self.mask_min_block_tokens}.")
        if not self.mask_min_aspect > 0:
            raise ValueError(f"mask_min_aspect must be > 0, got {self.mask_min_aspect}.")
        if self.mask_max_aspect is not None and not self.mask_max_aspect >= self.mask_min_aspect:
            raise ValueError(
                f"mask_max_aspect ({self.mask_max_aspect}) must be >= mask_min_aspect ({self.mask_min_aspect}), or "
                "None for 1 / mask_min_aspect."
            )
