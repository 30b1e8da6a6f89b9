import math

import pytest
import torch
import torch.nn.functional as F

from hf_unified_pretrain.objectives import (
    cross_entropy_loss,
    feature_regression_loss,
    image_text_contrastive_loss,
    info_nce_loss,
    layer_norm_no_affine,
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
    assert feature_regression_loss(predictions, targets, loss_type="smooth_l1").item() == pytest.approx((0.125 + 1.5) / 2)
    assert feature_regression_loss(predictions, targets, loss_type="mse").item() == pytest.approx((0.25 + 4) / 2)
    assert feature_regression_loss(predictions, targets, loss_type="l1").item() == pytest.approx(1.25)
    orthogonal = feature_regression_loss(torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 3.0]]]), loss_type="cosine")
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
