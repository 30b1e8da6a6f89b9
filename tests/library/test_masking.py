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
    masks = dirichlet_multimodal_mask({"rgb": 16, "depth": 16, "semseg": 16}, 8, 6,
                                      generator=torch.Generator().manual_seed(0))
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
