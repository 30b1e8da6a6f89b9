import pytest
import torch
from safetensors.torch import load_file

from hf_unified_pretrain.masking import (
    BlockMaskGenerator,
    RandomMaskGenerator,
    block_mask,
    dirichlet_multimodal_mask,
    expand_mask_units,
    gather_tokens,
    ids_to_mask,
    mask_to_ids,
    num_masked_tokens,
    random_mask,
    validate_bool_masked_pos,
    validate_mask_ratio,
)
from tests.conftest import shared_path


def test_random_mask_keeps_tokens_with_smallest_noise():
    noise = torch.tensor([[0.5, 0.1, 0.9, 0.3]])
    assert random_mask(1, 4, 0.5, noise=noise).tolist() == [[True, False, True, False]]


def test_random_mask_equals_mae_rule_on_same_noise():
    noise = torch.rand(3, 49, generator=torch.Generator().manual_seed(1))
    len_keep = int(49 * (1 - 0.75))
    # MAE: shuffle by noise, first len_keep kept, un-shuffle the 0/1 mask.
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mae_mask = torch.ones(3, 49)
    mae_mask[:, :len_keep] = 0
    mae_mask = torch.gather(mae_mask, 1, ids_restore).bool()
    assert torch.equal(random_mask(3, 49, 0.75, noise=noise), mae_mask)
    assert num_masked_tokens(49, 0.75) == 49 - 12


def test_random_mask_is_reproducible_with_generator_and_exact():
    first = random_mask(4, 196, 0.75, generator=torch.Generator().manual_seed(7))
    second = random_mask(4, 196, 0.75, generator=torch.Generator().manual_seed(7))
    other = random_mask(4, 196, 0.75, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, second) and not torch.equal(first, other)
    assert first.sum(1).tolist() == [147] * 4


def test_random_mask_rejects_bad_noise_shape():
    with pytest.raises(ValueError, match="noise must have shape"):
        random_mask(2, 4, 0.5, noise=torch.rand(2, 5))


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5])
def test_mask_ratio_outside_open_interval_is_rejected(ratio):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        validate_mask_ratio(ratio)
    with pytest.raises(ValueError):
        random_mask(1, 4, ratio)


@pytest.mark.parametrize("grid,num_masked", [((14, 14), 75), ((4, 4), 6), ((2, 3), 5), ((8, 6), 0), ((3, 3), 9)])
def test_block_mask_masks_exact_count(grid, num_masked):
    masks = block_mask(5, grid, num_masked, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (5, grid[0] * grid[1]) and masks.dtype == torch.bool
    assert masks.sum(1).tolist() == [num_masked] * 5


def test_block_mask_draws_blocks_not_scattered_tokens():
    # On a 14x14 grid with 75 masked tokens, BEiT blocks leave masked tokens mostly with masked neighbours.
    masks = block_mask(8, 14, 75, generator=torch.Generator().manual_seed(3)).view(8, 14, 14).float()
    neighbours = torch.zeros_like(masks)
    neighbours[:, 1:] += masks[:, :-1]
    neighbours[:, :-1] += masks[:, 1:]
    neighbours[:, :, 1:] += masks[:, :, :-1]
    neighbours[:, :, :-1] += masks[:, :, 1:]
    mean_masked_neighbours = (neighbours * masks).sum() / masks.sum()
    assert mean_masked_neighbours > 2.5  # a uniform random mask gives about 4 * 75/196 = 1.5


def test_block_mask_generator_reproducible():
    generator = BlockMaskGenerator((14, 14), 75)
    first = generator(3, torch.Generator().manual_seed(5))
    assert torch.equal(first, generator(3, torch.Generator().manual_seed(5)))
    assert RandomMaskGenerator(16, 0.5)(2).sum(1).tolist() == [8, 8]


def test_dirichlet_mask_keeps_exact_visible_budget():
    masks = dirichlet_multimodal_mask(
        {"rgb": 16, "depth": 16, "semseg": 16}, 8, 6, generator=torch.Generator().manual_seed(0)
    )
    visible = sum((~m).sum(1) for m in masks.values())
    assert visible.tolist() == [8] * 6
    assert [m.shape for m in masks.values()] == [torch.Size([6, 16])] * 3


def test_dirichlet_mask_matches_original_multimae_sampler():
    fixture = load_file(str(shared_path("parity", "multimae", "multimae_pretrain_tiny.safetensors")))
    torch.manual_seed(3)  # the fixture was drawn from the global RNG after seeding with 3
    masks = dirichlet_multimodal_mask({"rgb": 16, "depth": 16, "semseg": 16}, 8, 2)
    for name, mask in masks.items():
        assert torch.equal(mask.long(), fixture[f"random_masks_seed3.masks.{name}"])


def test_dirichlet_mask_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_visible"):
        dirichlet_multimodal_mask({"rgb": 4}, 5, 1)
    with pytest.raises(ValueError, match="one per modality"):
        dirichlet_multimodal_mask({"rgb": 4, "depth": 4}, 2, 1, alpha=[1.0])


def test_expand_mask_units_hand_example():
    units = torch.tensor([[True, False, False, True]])  # 2x2 units
    fine = expand_mask_units(units, (2, 2), 2).view(4, 4).int().tolist()
    assert fine == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]


def test_mask_to_ids_hand_example_and_round_trip():
    mask = torch.tensor([[False, True, False, True, True], [True, True, False, True, False]])
    ids = mask_to_ids(mask)
    assert ids.ids_keep.tolist() == [[0, 2], [2, 4]]
    assert ids.ids_masked.tolist() == [[1, 3, 4], [0, 1, 3]]
    tokens = torch.arange(5).expand(2, 5)
    shuffled = torch.cat([gather_tokens(tokens, ids.ids_keep), gather_tokens(tokens, ids.ids_masked)], 1)
    assert torch.equal(gather_tokens(shuffled, ids.ids_restore), tokens)
    assert torch.equal(ids_to_mask(ids.ids_keep, 5), mask)


def test_mask_to_ids_rejects_unequal_counts():
    with pytest.raises(ValueError, match="same number of tokens"):
        mask_to_ids(torch.tensor([[True, False], [True, True]]))


def test_gather_tokens_keeps_trailing_dims():
    tokens = torch.arange(24).view(1, 4, 3, 2)
    assert torch.equal(gather_tokens(tokens, torch.tensor([[3, 1]])), tokens[:, [3, 1]])


def test_validate_bool_masked_pos():
    assert validate_bool_masked_pos(torch.zeros(2, 2, 3, dtype=torch.bool), 2, 6).shape == (2, 6)
    assert validate_bool_masked_pos(torch.tensor([[0, 1]]), 1, 2).dtype == torch.bool
    with pytest.raises(TypeError, match="dtype torch.bool"):
        validate_bool_masked_pos(torch.zeros(1, 4), 1, 4)
    with pytest.raises(ValueError, match=r"shape \(batch_size, num_patches\) = \(1, 4\)"):
        validate_bool_masked_pos(torch.zeros(1, 5, dtype=torch.bool), 1, 4)
    with pytest.raises(ValueError, match="only 0 and 1"):
        validate_bool_masked_pos(torch.tensor([[0, 2]]), 1, 2)


# Hand-computed values at settings where every parameter matters (non-square grids, asymmetric masks, alpha != 1)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_tokens,ratio,expected", [(10, 0.35, 4), (7, 0.6, 5), (12, 0.25, 3), (5, 0.01, 1)])
def test_num_masked_tokens_rounds_the_visible_count_down(num_tokens, ratio, expected):
    # visible = int(N * (1 - r)): 10 * 0.65 = 6.5 -> 6 visible, 4 masked; 7 * 0.4 = 2.8 -> 2 visible, 5 masked
    assert num_masked_tokens(num_tokens, ratio) == expected


def test_random_mask_hand_example_per_row_with_a_non_half_ratio():
    noise = torch.tensor([[0.9, 0.2, 0.4, 0.1, 0.7], [0.3, 0.8, 0.5, 0.6, 0.0]])
    # N=5, ratio 0.6 -> int(2.0) = 2 visible per row: the two smallest noises
    assert random_mask(2, 5, 0.6, noise=noise).int().tolist() == [[1, 0, 1, 0, 1], [0, 1, 1, 1, 0]]


def test_random_mask_that_would_hide_every_token_is_rejected():
    with pytest.raises(ValueError, match="masks all 3 tokens.*lower mask_ratio"):
        random_mask(1, 3, 0.7)  # int(3 * 0.3) = 0 visible
    with pytest.raises(ValueError, match="masks all 3 tokens"):
        RandomMaskGenerator(3, 0.7)


@pytest.mark.parametrize("aspect,block", [(2 / 3, (2, 3)), (3 / 2, (3, 2))])
def test_block_mask_block_shape_follows_area_and_aspect_height_over_width(aspect, block):
    # area fixed at 6 and aspect fixed: every sample is one block of height round(sqrt(6a)) x width round(sqrt(6/a))
    masks = block_mask(
        6, (4, 6), 6, min_block_tokens=6, max_block_tokens=6, min_aspect=aspect, max_aspect=aspect,
        generator=torch.Generator().manual_seed(0),
    ).view(6, 4, 6)  # fmt: skip
    for mask in masks:
        rows, cols = mask.any(dim=1).nonzero().flatten(), mask.any(dim=0).nonzero().flatten()
        assert (len(rows), len(cols)) == block
        assert mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all() and mask.sum() == 6


def test_block_mask_generator_uses_its_aspect_bounds():
    generator = BlockMaskGenerator((4, 6), 6, min_block_tokens=6, min_aspect=1.5, max_aspect=1.5)
    mask = generator(1, torch.Generator().manual_seed(1)).view(4, 6)
    assert (int(mask.any(dim=1).sum()), int(mask.any(dim=0).sum())) == (3, 2)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"min_aspect": 0.0}, "min_aspect must be > 0"),
        ({"min_aspect": -0.3}, "min_aspect must be > 0"),
        ({"min_aspect": 0.3, "max_aspect": 0.0}, "max_aspect must be > 0"),
        ({"min_aspect": 2.0, "max_aspect": 1.0}, "must not exceed max_aspect"),
        ({"min_block_tokens": 0}, "min_block_tokens must be at least 1"),
    ],
)
def test_block_mask_rejects_bad_shape_bounds(kwargs, message):
    with pytest.raises(ValueError, match=message):
        block_mask(1, (4, 6), 6, **kwargs)
    with pytest.raises(ValueError, match=message):
        BlockMaskGenerator((4, 6), 6, **kwargs)


def test_block_mask_rejects_bad_grids_and_counts():
    with pytest.raises(ValueError, match="grid_size must be positive"):
        block_mask(1, (0, 6), 0)
    with pytest.raises(ValueError, match=r"num_masked must be in \[0, 24\]"):
        BlockMaskGenerator((4, 6), 25)


def test_dirichlet_mask_concentration_sets_the_expected_split():
    # Huge concentrations make the share almost exactly alpha / sum(alpha): 8 visible tokens split 2 (rgb) / 6 (depth).
    masks = dirichlet_multimodal_mask(
        {"rgb": 6, "depth": 10}, 8, 4, alpha=[1e5, 3e5], generator=torch.Generator().manual_seed(0)
    )
    assert (~masks["rgb"]).sum(1).tolist() == [2] * 4
    assert (~masks["depth"]).sum(1).tolist() == [6] * 4
    # Tiny concentrations put (almost) the whole budget on one modality per sample.
    sparse = dirichlet_multimodal_mask(
        {"rgb": 8, "depth": 8}, 8, 16, alpha=0.01, generator=torch.Generator().manual_seed(0)
    )
    per_sample = torch.stack([(~mask).sum(1) for mask in sparse.values()], 1)
    assert sorted(set(per_sample.max(1).values.tolist())) == [8]


def test_dirichlet_mask_rejects_non_positive_concentration_and_empty_modalities():
    with pytest.raises(ValueError, match="alpha must all be > 0"):
        dirichlet_multimodal_mask({"rgb": 4, "depth": 4}, 2, 1, alpha=[1.0, 0.0])
    with pytest.raises(ValueError, match="at least 1 token"):
        dirichlet_multimodal_mask({"rgb": 4, "depth": 0}, 2, 1)


def test_expand_mask_units_on_a_non_square_grid_and_bad_shapes():
    units = torch.tensor([[True, False, False, False, True, True]])  # 2x3 units
    fine = expand_mask_units(units, (2, 3), 2).view(4, 6).int().tolist()
    assert fine == [[1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]]
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        expand_mask_units(units[:, :4], (2, 3), 2)


def test_ids_to_mask_and_gather_tokens_hand_values():
    assert ids_to_mask(torch.tensor([[4, 0], [1, 2]]), 5).int().tolist() == [[0, 1, 1, 1, 0], [1, 0, 0, 1, 1]]
    tokens = torch.tensor([[10, 11, 12, 13], [20, 21, 22, 23]])
    assert gather_tokens(tokens, torch.tensor([[3, 0], [1, 1]])).tolist() == [[13, 10], [21, 21]]


def test_validate_mask_ratio_returns_a_float_and_validate_bool_masked_pos_flattens_row_major():
    assert validate_mask_ratio(3 / 8) == 0.375
    grid = torch.tensor([[[True, False, False], [False, False, True]]])  # (1, 2, 3)
    assert validate_bool_masked_pos(grid, 1, 6).int().tolist() == [[1, 0, 0, 0, 0, 1]]


def test_mask_to_ids_can_require_a_visible_token():
    everything = torch.ones(2, 6, dtype=torch.bool)
    assert mask_to_ids(everything).ids_keep.shape == (2, 0)  # fine for encoders with extra (global) tokens
    with pytest.raises(ValueError, match="masks all 6 tokens.*would see nothing"):
        mask_to_ids(everything, require_visible=True)


def test_itpn_token_dropping_rejects_a_mask_that_hides_every_patch():
    from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNForPreTraining

    model = ITPNForPreTraining(ITPNConfig.from_preset("itpn-tiny-test")).eval()
    side = model.config.image_size
    num_patches = (side // model.config.patch_size) ** 2
    pixels = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0)).clamp(-2, 2)
    with pytest.raises(ValueError, match=f"masks all {num_patches} tokens"):
        model(pixels, bool_masked_pos=torch.ones(2, num_patches, dtype=torch.bool))
    with pytest.raises(ValueError, match="masks no token"):
        model(pixels, bool_masked_pos=torch.zeros(2, num_patches, dtype=torch.bool))


def test_random_mask_generator_is_random_mask_with_its_ratio():
    generator = RandomMaskGenerator(10, 0.35)  # int(10 * 0.65) = 6 visible, 4 masked
    mask = generator(3, torch.Generator().manual_seed(2))
    assert mask.sum(1).tolist() == [4, 4, 4]
    assert torch.equal(mask, random_mask(3, 10, 0.35, generator=torch.Generator().manual_seed(2)))
    assert repr(generator) == "RandomMaskGenerator(num_tokens=10, mask_ratio=0.35)"


def test_random_mask_with_an_exact_count():
    noise = torch.tensor([[0.9, 0.2, 0.4, 0.1, 0.7], [0.3, 0.8, 0.5, 0.6, 0.0]])
    # 2 masked per row, whatever a ratio would round to: the two largest noises
    assert random_mask(2, 5, num_masked=2, noise=noise).int().tolist() == [[1, 0, 0, 0, 1], [0, 1, 0, 1, 0]]
    generator = RandomMaskGenerator(10, num_masked=3)
    assert generator(4, torch.Generator().manual_seed(0)).sum(1).tolist() == [3, 3, 3, 3]
    assert generator.num_masked == 3 and repr(generator) == "RandomMaskGenerator(num_tokens=10, num_masked=3)"
    assert RandomMaskGenerator(10, 0.35).num_masked == 4
    with pytest.raises(ValueError, match=r"num_masked must be in \[0, 5\)"):
        random_mask(1, 5, num_masked=5)
    with pytest.raises(ValueError, match="needs `mask_ratio` or an exact `num_masked`"):
        random_mask(1, 5)
