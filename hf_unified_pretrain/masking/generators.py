"""Mask generators. One convention everywhere: `bool_masked_pos` is True where a token is masked.

Every generator produces an exact number of masked tokens per sample (token-dropping encoders need equal counts),
takes an optional `torch.Generator` so that tests and data collators are reproducible, and runs on any device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from .validation import validate_mask_ratio

# BEiT's block-masking defaults: blocks of at least 16 tokens, aspect ratios in [0.3, 1 / 0.3].
BEIT_MIN_BLOCK_TOKENS = 16
BEIT_MIN_ASPECT = 0.3


def num_masked_tokens(num_tokens: int, mask_ratio: float) -> int:
    """Number of masked tokens for a ratio, with MAE's rounding (the visible count is rounded down).

    Args:
        num_tokens: Tokens per sample.
        mask_ratio: Fraction to mask, in (0, 1).

    Returns:
        `num_tokens - int(num_tokens * (1 - mask_ratio))`.
    """
    validate_mask_ratio(mask_ratio)
    return num_tokens - int(num_tokens * (1 - mask_ratio))


def random_mask(
    batch_size: int,
    num_tokens: int,
    mask_ratio: float | None = None,
    *,
    num_masked: int | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Uniform random masking as in MAE: the tokens with the smallest noise stay visible.

    Args:
        batch_size: B.
        num_tokens: N.
        mask_ratio: Fraction of tokens to mask, in (0, 1).
        num_masked: Exact number of tokens to mask instead of `mask_ratio`, in [0, N).
        noise: Optional (B, N) noise; given the same noise, the mask is the one MAE's `random_masking` removes.
        generator: Optional generator used when `noise` is None.
        device: Device of the returned mask when `noise` is None.

    Returns:
        (B, N) bool, exactly `num_masked` (else `num_masked_tokens(N, mask_ratio)`) True per row.

    Raises:
        ValueError: the ratio leaves no visible token (a token-dropping encoder would see nothing).
    """
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be at least 1, got {num_tokens}.")
    if num_masked is not None:
        if not 0 <= num_masked < num_tokens:
            raise ValueError(
                f"num_masked must be in [0, {num_tokens}) so that a token stays visible, got {num_masked}."
            )
        num_visible = num_tokens - num_masked
    elif mask_ratio is None:
        raise ValueError("random_mask needs `mask_ratio` or an exact `num_masked`.")
    else:
        num_visible = num_tokens - num_masked_tokens(num_tokens, mask_ratio)
    if num_visible == 0:
        raise ValueError(
            f"mask_ratio={mask_ratio} masks all {num_tokens} tokens (MAE rounding keeps int({num_tokens} * "
            f"(1 - {mask_ratio})) = 0 visible), so the encoder would see nothing: lower mask_ratio below "
            f"{1 - 1 / num_tokens:.4g} or use more tokens (a larger image or a smaller patch size)."
        )
    if noise is None:
        noise = torch.rand(batch_size, num_tokens, generator=generator, device=device)
    elif noise.shape != (batch_size, num_tokens):
        raise ValueError(
            f"noise must have shape (batch_size, num_tokens) = {(batch_size, num_tokens)}, got {tuple(noise.shape)}."
        )
    rank = torch.argsort(torch.argsort(noise, dim=1), dim=1)
    return rank >= num_visible


def _grid(grid_size: tuple[int, int] | int) -> tuple[int, int]:
    height, width = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    if height < 1 or width < 1:
        raise ValueError(f"grid_size must be positive (height, width), got {(height, width)}.")
    return height, width


def _validate_block_shape(
    min_block_tokens: int, min_aspect: float, max_aspect: float | None, max_attempts: int = 1
) -> float:
    """Checks block-mask shape bounds; returns the resolved largest aspect ratio."""
    if min_block_tokens < 1:
        raise ValueError(
            f"min_block_tokens must be at least 1 (smallest block area in tokens), got {min_block_tokens}."
        )
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}.")
    if not min_aspect > 0:
        raise ValueError(
            f"min_aspect must be > 0 (a block's height/width ratio; BEiT uses 0.3), got {min_aspect}: aspect "
            "ratios are drawn log-uniformly, so they must be positive."
        )
    max_aspect = 1 / min_aspect if max_aspect is None else max_aspect
    if not max_aspect > 0:
        raise ValueError(
            f"max_aspect must be > 0 (a block's height/width ratio), got {max_aspect}; or leave it None "
            "for 1 / min_aspect."
        )
    if min_aspect > max_aspect:
        raise ValueError(f"min_aspect ({min_aspect}) must not exceed max_aspect ({max_aspect}): swap them.")
    return max_aspect


def block_mask(
    batch_size: int,
    grid_size: tuple[int, int] | int,
    num_masked: int,
    *,
    min_block_tokens: int = BEIT_MIN_BLOCK_TOKENS,
    max_block_tokens: int | None = None,
    min_aspect: float = BEIT_MIN_ASPECT,
    max_aspect: float | None = None,
    max_attempts: int = 10,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Block-wise masking as in BEiT: rectangles of random area and aspect until `num_masked` tokens are covered.

    Rectangles are drawn as BEiT does (area uniform in [min_block_tokens, remaining], log-uniform aspect); when no
    rectangle fits any more (small grids), the remaining count is filled with uniformly chosen tokens so that every
    sample masks exactly `num_masked` tokens.

    Args:
        batch_size: B.
        grid_size: (H, W) of the patch grid, or one int for a square grid.
        num_masked: Tokens to mask per sample, in [0, H*W].
        min_block_tokens: Smallest rectangle area (BEiT: 16).
        max_block_tokens: Largest rectangle area (default: `num_masked`).
        min_aspect: Smallest aspect ratio; the largest defaults to `1 / min_aspect`.
        max_aspect: Largest aspect ratio.
        max_attempts: Rectangle draws per block before giving up on that block.
        generator: Optional generator for reproducibility.
        device: Device of the returned mask.

    Returns:
        (B, H*W) bool, row-major, exactly `num_masked` True per row.
    """
    height, width = _grid(grid_size)
    num_tokens = height * width
    if not 0 <= num_masked <= num_tokens:
        raise ValueError(f"num_masked must be in [0, {num_tokens}] for a {height}x{width} grid, got {num_masked}.")
    max_aspect = _validate_block_shape(min_block_tokens, min_aspect, max_aspect, max_attempts)
    log_aspect = (math.log(min_aspect), math.log(max_aspect))
    max_block_tokens = num_masked if max_block_tokens is None else max_block_tokens

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=generator).item()

    def randint(low: int, high: int) -> int:  # inclusive bounds
        return int(torch.randint(low, high + 1, (), generator=generator).item())

    masks = torch.zeros(batch_size, height, width, dtype=torch.bool)
    for mask in masks:
        count = 0
        while count < num_masked:
            budget = min(num_masked - count, max_block_tokens)
            added = 0
            for _ in range(max_attempts):
                area = uniform(min(min_block_tokens, budget), budget)
                aspect = math.exp(uniform(*log_aspect))
                block_h = round(math.sqrt(area * aspect))
                block_w = round(math.sqrt(area / aspect))
                if not (0 < block_h < height and 0 < block_w < width):
                    continue
                top, left = randint(0, height - block_h), randint(0, width - block_w)
                window = mask[top : top + block_h, left : left + block_w]
                new = block_h * block_w - int(window.sum())
                if 0 < new <= budget:
                    window.fill_(True)
                    added = new
                    break
            if added == 0:
                break
            count += added
        if count < num_masked:
            free = (~mask).flatten().nonzero().squeeze(1)
            pick = free[torch.randperm(free.numel(), generator=generator)[: num_masked - count]]
            mask.view(-1)[pick] = True
    return masks.flatten(1).to(device)


def dirichlet_multimodal_mask(
    num_tokens: Mapping[str, int],
    num_visible: int,
    batch_size: int,
    *,
    alpha: float | Sequence[float] = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Multi-modal masking as in MultiMAE: a Dirichlet draw splits a fixed visible budget across modalities.

    Per sample, the share of the `num_visible` visible tokens given to each modality is Dirichlet(alpha); rounding is
    repaired so that every sample keeps exactly `num_visible` tokens in total (the draws follow MultiMAE's order, so
    with the same seed the masks equal the original sampler's).

    Args:
        num_tokens: Tokens per modality, e.g. `{"rgb": 196, "depth": 196}` (order = concatenation order).
        num_visible: Visible tokens per sample across all modalities.
        batch_size: B.
        alpha: Dirichlet concentration, one value or one per modality.
        generator: Optional generator (None: the global RNG).
        device: Device of the returned masks.

    Returns:
        `{modality: (B, N_m) bool}`, True = masked; per sample, `sum(~mask)` over modalities equals `num_visible`.
    """
    names, counts = list(num_tokens), list(num_tokens.values())
    if not names or any(count < 1 for count in counts):
        raise ValueError(
            f"num_tokens needs at least one modality, each with at least 1 token, got {dict(num_tokens)}."
        )
    total = sum(counts)
    if not 0 < num_visible <= total:
        raise ValueError(f"num_visible must be in (0, {total}] (tokens over all modalities), got {num_visible}.")
    alphas = [float(alpha)] * len(names) if isinstance(alpha, (int, float)) else [float(a) for a in alpha]
    if len(alphas) != len(names):
        raise ValueError(
            f"alpha has {len(alphas)} values but there are {len(names)} modalities: give one per modality."
        )
    if not all(a > 0 for a in alphas):
        raise ValueError(f"Dirichlet concentrations alpha must all be > 0, got {alphas}.")
    concentration = torch.tensor(alphas).expand(batch_size, -1).contiguous()
    shares = torch._sample_dirichlet(concentration, generator=generator)
    visible_per_modality = (shares * num_visible).round().long()

    drafts = []
    for index, count in enumerate(counts):
        order = torch.argsort(torch.rand(batch_size, count, generator=generator), dim=1)
        position_rank = torch.arange(count).expand(batch_size, -1).gather(1, order)
        drafts.append((position_rank >= visible_per_modality[:, index : index + 1]).long())
    draft = torch.cat(drafts, dim=1)
    # Rounding can miss the budget by a few tokens: keep the drafted visible tokens first, break ties at random.
    ids_shuffle = torch.argsort(draft + torch.rand(draft.shape, generator=generator), dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    masked = torch.ones(batch_size, total, dtype=torch.bool)
    masked[:, :num_visible] = False
    masked = masked.gather(1, ids_restore).to(device)
    return dict(zip(names, torch.split(masked, counts, dim=1)))


def expand_mask_units(bool_masked_pos: torch.Tensor, grid_size: tuple[int, int] | int, unit_size: int) -> torch.Tensor:
    """Expands a mask on coarse units (e.g. HiViT's 16x16 patches) to the finer tokens inside each unit.

    Args:
        bool_masked_pos: (B, h*w) bool mask on the unit grid.
        grid_size: (h, w) of the unit grid.
        unit_size: Fine tokens per unit side (u).

    Returns:
        (B, (h*u)*(w*u)) bool mask on the fine grid, row-major.
    """
    height, width = _grid(grid_size)
    if unit_size < 1:
        raise ValueError(f"unit_size must be at least 1, got {unit_size}.")
    if bool_masked_pos.dim() != 2 or bool_masked_pos.shape[1] != height * width:
        raise ValueError(
            f"bool_masked_pos must have shape (batch_size, h*w) = (B, {height * width}) for a {height}x{width} unit "
            f"grid, got {tuple(bool_masked_pos.shape)}."
        )
    units = bool_masked_pos.reshape(-1, height, width)
    fine = units.repeat_interleave(unit_size, dim=1).repeat_interleave(unit_size, dim=2)
    return fine.flatten(1)


class RandomMaskGenerator:
    """Callable MAE-style mask generator for data collators.

    Args:
        num_tokens: Tokens per sample.
        mask_ratio: Fraction to mask, in (0, 1).
        num_masked: Exact number of tokens to mask instead of `mask_ratio`.
    """

    def __init__(self, num_tokens: int, mask_ratio: float | None = None, num_masked: int | None = None) -> None:
        if num_masked is None:
            validate_mask_ratio(mask_ratio)
        # fails now, not in the first batch
        mask = random_mask(1, num_tokens, mask_ratio, num_masked=num_masked, noise=torch.zeros(1, num_tokens))
        self.num_tokens, self.mask_ratio, self.exact_count = num_tokens, mask_ratio, num_masked is not None
        self.num_masked = int(mask.sum())

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Returns a (B, N) bool mask."""
        return random_mask(batch_size, self.num_tokens, num_masked=self.num_masked, generator=generator)

    def __repr__(self) -> str:
        count = f"num_masked={self.num_masked}" if self.exact_count else f"mask_ratio={self.mask_ratio}"
        return f"RandomMaskGenerator(num_tokens={self.num_tokens}, {count})"


class BlockMaskGenerator:
    """Callable BEiT-style block mask generator for data collators.

    Args:
        grid_size: (H, W) patch grid or one int.
        num_masked: Masked tokens per sample.
        min_block_tokens: Smallest block area.
        min_aspect: Smallest block aspect ratio (largest = 1 / min_aspect unless `max_aspect` is given).
        max_aspect: Largest block aspect ratio.
    """

    def __init__(
        self,
        grid_size: tuple[int, int] | int,
        num_masked: int,
        min_block_tokens: int = BEIT_MIN_BLOCK_TOKENS,
        min_aspect: float = BEIT_MIN_ASPECT,
        max_aspect: float | None = None,
    ) -> None:
        self.grid_size = _grid(grid_size)
        if not 0 <= num_masked <= self.grid_size[0] * self.grid_size[1]:
            raise ValueError(
                f"num_masked must be in [0, {self.grid_size[0] * self.grid_size[1]}] for a "
                f"{self.grid_size[0]}x{self.grid_size[1]} grid, got {num_masked}."
            )
        _validate_block_shape(min_block_tokens, min_aspect, max_aspect)
        self.num_masked, self.min_block_tokens = num_masked, min_block_tokens
        self.min_aspect, self.max_aspect = min_aspect, max_aspect

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Returns a (B, H*W) bool mask."""
        return block_mask(
            batch_size,
            self.grid_size,
            self.num_masked,
            min_block_tokens=self.min_block_tokens,
            min_aspect=self.min_aspect,
            max_aspect=self.max_aspect,
            generator=generator,
        )

    def __repr__(self) -> str:
        return f"BlockMaskGenerator(grid_size={self.grid_size}, num_masked={self.num_masked})"
