import math

import pytest
import torch
import torch.nn.functional as F

from hf_unified_pretrain.objectives import (
    all_gather_with_grad,
    cross_entropy_loss,
    distributed_is_active,
    feature_regression_loss,
    image_text_contrastive_loss,
    info_nce_loss,
    layer_norm_no_affine,
    normalize_patches,
    patchify,
    pixel_reconstruction_loss,
    unpatchify,
    weighted_total,
)


def test_patchify_hand_example_and_inverse():
    image = torch.arange(16.0).view(1, 1, 4, 4)
    patches = patchify(image, 2)
    assert patches.tolist() == [[[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]]
    rgb = torch.randn(2, 3, 8, 12)
    assert torch.equal(unpatchify(patchify(rgb, 4), 4, (2, 3), 3), rgb)
    # channel is the fastest-moving index inside a patch (MAE layout)
    assert torch.equal(patchify(rgb, 4)[0, 0, :3], rgb[0, :, 0, 0])


def test_patchify_rejects_indivisible_size():
    with pytest.raises(ValueError, match="not divisible by the patch size 4"):
        patchify(torch.zeros(1, 3, 10, 8), 4)


def test_pixel_loss_counts_masked_tokens_only():
    predictions = torch.zeros(1, 2, 2)
    targets = torch.tensor([[[1.0, 1.0], [2.0, 2.0]]])
    assert pixel_reconstruction_loss(predictions, targets, torch.tensor([[False, True]])).item() == 4.0
    assert pixel_reconstruction_loss(predictions, targets).item() == 2.5


def test_pixel_loss_per_patch_normalisation_uses_unbiased_variance():
    targets = torch.tensor([[[1.0, 3.0]]])  # mean 2, unbiased variance 2
    loss = pixel_reconstruction_loss(torch.zeros(1, 1, 2), targets, normalize_target=True, eps=0.0)
    assert loss.item() == pytest.approx(0.5)


def test_feature_loss_types_hand_values():
    predictions = torch.tensor([[[0.5, 2.0]]])
    targets = torch.zeros(1, 1, 2)
    assert feature_regression_loss(predictions, targets, loss_type="smooth_l1").item() == pytest.approx(
        (0.125 + 1.5) / 2
    )
    assert feature_regression_loss(predictions, targets, loss_type="mse").item() == pytest.approx((0.25 + 4) / 2)
    assert feature_regression_loss(predictions, targets, loss_type="l1").item() == pytest.approx(1.25)
    orthogonal = feature_regression_loss(
        torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 3.0]]]), loss_type="cosine"
    )
    aligned = feature_regression_loss(torch.tensor([[[1.0, 1.0]]]), torch.tensor([[[2.0, 2.0]]]), loss_type="cosine")
    assert orthogonal.item() == pytest.approx(1.0) and aligned.item() == pytest.approx(0.0, abs=1e-6)


def test_feature_loss_mask_and_target_normalisation():
    predictions, targets = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 1] = mask[1, 3] = True
    expected = F.smooth_l1_loss(predictions[mask], layer_norm_no_affine(targets)[mask])
    got = feature_regression_loss(predictions, targets, mask, normalize_target=True)
    assert torch.allclose(got, expected)
    assert torch.allclose(layer_norm_no_affine(targets), F.layer_norm(targets, (8,), eps=1e-6))
    with pytest.raises(ValueError, match="Unknown loss_type"):
        feature_regression_loss(predictions, targets, loss_type="huber")


def test_feature_loss_does_not_backpropagate_into_target():
    targets = torch.randn(1, 3, 4, requires_grad=True)
    feature_regression_loss(torch.randn(1, 3, 4, requires_grad=True), targets).backward()
    assert targets.grad is None


def test_info_nce_hand_value():
    eye = torch.eye(2)
    loss = info_nce_loss(eye, eye, temperature=1.0, normalize=False)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))


def test_image_text_loss_is_symmetric_mean():
    images, texts = torch.randn(4, 8), torch.randn(4, 8)
    scale = 10.0
    logits = scale * F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).T
    expected = (F.cross_entropy(logits, torch.arange(4)) + F.cross_entropy(logits.T, torch.arange(4))) / 2
    assert torch.allclose(image_text_contrastive_loss(images, texts, scale), expected)


def test_cross_entropy_soft_and_hard_labels():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    hard = torch.tensor([0, 1])
    assert torch.allclose(cross_entropy_loss(logits, hard), cross_entropy_loss(logits, F.one_hot(hard, 2).float()))
    mixed = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    expected = -(0.5 * F.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(cross_entropy_loss(logits, mixed), expected)
    smoothed = cross_entropy_loss(logits, F.one_hot(hard, 2).float(), label_smoothing=0.2)
    assert torch.allclose(smoothed, F.cross_entropy(logits, hard, label_smoothing=0.2))


def test_weighted_total():
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}
    assert weighted_total(losses, {"a": 0.5}).item() == 4.0
    with pytest.raises(KeyError, match="typo|loss parts"):
        weighted_total(losses, {"c": 1.0})
    with pytest.raises(ValueError):
        weighted_total({})


# Hand-computed values at settings where every parameter matters (eps, beta, temperature, scale, smoothing != default)
# ----------------------------------------------------------------------------------------------------------------


def test_normalize_patches_hand_value_with_eps():
    # patch [1, 3]: mean 2, unbiased variance 2; with eps = 1 the scale is sqrt(3)
    out = normalize_patches(torch.tensor([[1.0, 3.0], [0.0, 4.0]]), eps=1.0)
    expected = torch.tensor([[-1 / math.sqrt(3), 1 / math.sqrt(3)], [-2 / math.sqrt(9), 2 / math.sqrt(9)]])
    torch.testing.assert_close(out, expected)


def test_normalize_patches_rejects_single_value_patches_and_negative_eps():
    with pytest.raises(ValueError, match="at least 2 values per patch"):
        normalize_patches(torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="eps must be >= 0"):
        normalize_patches(torch.zeros(2, 3), eps=-1.0)


def test_layer_norm_no_affine_hand_value_with_eps():
    # [1, 3]: mean 2, biased variance 1; eps = 1 -> (x - 2) / sqrt(2)
    torch.testing.assert_close(
        layer_norm_no_affine(torch.tensor([[1.0, 3.0]]), eps=1.0),
        torch.tensor([[-1 / math.sqrt(2), 1 / math.sqrt(2)]]),
    )


def test_pixel_loss_asymmetric_mask_with_normalised_target_and_eps():
    predictions = torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[0.5, -0.5], [0.0, 2.0]]])
    targets = torch.tensor([[[1.0, 3.0], [0.0, 4.0]], [[2.0, 2.0], [1.0, 2.0]]])
    mask = torch.tensor([[False, True], [True, True]])  # 3 masked tokens
    # normalised targets (eps 1): token (0,1) -> [-2/3, 2/3]; (1,0) -> [0, 0]; (1,1): mean 1.5, var 0.5 -> +-0.5/sqrt(1.5)
    s = 0.5 / math.sqrt(1.5)
    token_01 = ((1 + 2 / 3) ** 2 + (1 - 2 / 3) ** 2) / 2
    token_10 = (0.25 + 0.25) / 2
    token_11 = ((0 + s) ** 2 + (2 - s) ** 2) / 2
    expected = (token_01 + token_10 + token_11) / 3
    got = pixel_reconstruction_loss(predictions, targets, mask, normalize_target=True, eps=1.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_smooth_l1_beta_and_target_norm_eps_are_used():
    predictions, targets = torch.tensor([[[0.25, 2.0]]]), torch.zeros(1, 1, 2)
    # beta 0.5: |0.25| < beta -> 0.5 * 0.0625 / 0.5 = 0.0625; |2| >= beta -> 2 - 0.25 = 1.75
    got = feature_regression_loss(predictions, targets, loss_type="smooth_l1", beta=0.5)
    assert got.item() == pytest.approx((0.0625 + 1.75) / 2)
    # target [1, 3] layer-normalised with eps 1 -> [-1/sqrt(2), 1/sqrt(2)]; MSE against 0 predictions = 0.5
    got = feature_regression_loss(
        torch.zeros(1, 1, 2), torch.tensor([[[1.0, 3.0]]]), loss_type="mse", normalize_target=True, target_norm_eps=1.0
    )
    assert got.item() == pytest.approx(0.5)


def test_info_nce_hand_value_at_temperature_half_with_normalisation():
    queries = torch.tensor([[2.0, 0.0], [0.0, 3.0], [3.0, 4.0]])  # normalised: e1, e2, (0.6, 0.8)
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 5.0]])  # normalised: e1, e2, e2
    scores = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [0.6, 0.8, 0.8]]) / 0.5
    expected = sum(math.log(scores[i].exp().sum()) - scores[i, i] for i in range(3)) / 3
    assert info_nce_loss(queries, keys, temperature=0.5).item() == pytest.approx(float(expected), rel=1e-6)


def test_image_text_loss_hand_value_with_scale_three():
    images = torch.eye(2)
    texts = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # text 1 normalised: (1, 1) / sqrt(2)
    r = 3 / math.sqrt(2)
    image_to_text = (math.log(1 + math.exp(r - 3)) + math.log(1 + math.exp(-r))) / 2
    text_to_image = (math.log(1 + math.exp(-3)) + math.log(2)) / 2
    got = image_text_contrastive_loss(images, texts, 3.0)
    assert got.item() == pytest.approx((image_to_text + text_to_image) / 2, rel=1e-6)


def test_soft_cross_entropy_with_smoothing_hand_value():
    logits = torch.tensor([[math.log(3.0), 0.0, 0.0]])  # softmax (0.6, 0.2, 0.2)
    targets = torch.tensor([[0.5, 0.5, 0.0]])
    smoothed = targets * 0.7 + 0.3 / 3  # (0.45, 0.45, 0.1)
    expected = -(0.45 * math.log(0.6) + 0.45 * math.log(0.2) + 0.1 * math.log(0.2))
    assert cross_entropy_loss(logits, targets, label_smoothing=0.3).item() == pytest.approx(expected, rel=1e-6)
    assert smoothed.sum().item() == pytest.approx(1.0)


def test_all_gather_without_a_process_group_is_the_identity():
    tensor = torch.arange(6.0).view(3, 2)
    assert not distributed_is_active()
    assert all_gather_with_grad(tensor) is tensor


# Bad input: shapes never broadcast, empty batches and empty masks fail with the problem named
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [pixel_reconstruction_loss, feature_regression_loss])
def test_regression_losses_refuse_to_broadcast(loss):
    with pytest.raises(ValueError, match=r"predictions \(2, 3, 1\) and targets \(2, 3, 4\).*must not broadcast"):
        loss(torch.zeros(2, 3, 1), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"bool_masked_pos must have shape \(batch_size, num_tokens\) = \(2, 3\)"):
        loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.ones(2, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty batch"):
        loss(torch.zeros(0, 3, 4), torch.zeros(0, 3, 4))


@pytest.mark.parametrize("loss", [pixel_reconstruction_loss, feature_regression_loss])
def test_regression_losses_refuse_a_mask_that_masks_nothing(loss):
    with pytest.raises(ValueError, match="masks no token.*bool_masked_pos=None"):
        loss(torch.zeros(2, 3, 4), torch.ones(2, 3, 4), torch.zeros(2, 3, dtype=torch.bool))
    # masking everything is a valid (if hard) objective: every token counts
    everything = loss(torch.zeros(2, 3, 4), torch.ones(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))
    assert everything.item() == pytest.approx(1.0 if loss is pixel_reconstruction_loss else 0.5)


def test_contrastive_losses_refuse_mismatched_pairs_bad_temperature_and_empty_batches():
    with pytest.raises(ValueError, match=r"queries and keys must both have shape \(batch_size, dim\)"):
        info_nce_loss(torch.randn(4, 8), torch.randn(3, 8))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        info_nce_loss(torch.randn(4, 8), torch.randn(4, 8), temperature=0.0)
    with pytest.raises(ValueError, match="image_embeds and text_embeds"):
        image_text_contrastive_loss(torch.randn(4, 8), torch.randn(4, 1), 1.0)
    with pytest.raises(ValueError, match="empty batch"):
        info_nce_loss(torch.randn(0, 8), torch.randn(0, 8))


def test_cross_entropy_refuses_targets_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"soft label distributions .* = \(2, 3\)"):
        cross_entropy_loss(torch.randn(2, 3), torch.rand(2, 4))
    with pytest.raises(ValueError, match=r"class indices \(batch_size,\) = \(2,\)"):
        cross_entropy_loss(torch.randn(2, 3), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy_loss(torch.randn(2, 3), torch.tensor([0, 1]), label_smoothing=1.0)


def test_weighted_total_refuses_non_scalar_parts():
    with pytest.raises(ValueError, match=r"must be scalars.*'b': \(3,\)"):
        weighted_total({"a": torch.tensor(1.0), "b": torch.ones(3)})


def test_patchify_and_unpatchify_check_shapes():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        patchify(torch.zeros(3, 8, 8), 4)
    with pytest.raises(ValueError, match=r"\(B, h\*w, p\*p\*C\) = \(B, 6, 48\)"):
        unpatchify(torch.zeros(1, 6, 47), 4, (2, 3), 3)
