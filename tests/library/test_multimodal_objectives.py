"""Dense multi-modal objectives (MultiMAE): hand-computed values at non-degenerate settings, and shape errors."""

import math

import pytest
import torch

from hf_unified_pretrain.objectives.multimodal import masked_dense_loss, normalize_dense_patches, standardize_depth


def test_normalize_dense_patches_standardises_each_patch_over_channels_and_pixels_with_eps():
    # (1, 2, 2, 4): two 2x2 patches of 2 channels = 8 values each; eps = 1 (not the default)
    images = torch.zeros(1, 2, 2, 4)
    images[0, 0, :, :2] = torch.tensor([[0.0, 2.0], [4.0, 6.0]])  # left patch, channel 0; channel 1 stays 0
    images[0, :, :, 2:] = 5.0  # right patch constant
    left = torch.tensor([0.0, 2.0, 4.0, 6.0, 0.0, 0.0, 0.0, 0.0])
    mean, var = left.mean(), left.var()  # 1.5 and unbiased variance 36/7 - ... computed from the 8 values
    assert mean.item() == 1.5 and var.item() == pytest.approx((2.25 + 0.25 + 6.25 + 20.25 + 4 * 2.25) / 7)
    out = normalize_dense_patches(images, 2, eps=1.0)
    torch.testing.assert_close(out[0, 0, 1, 1], (6.0 - 1.5) / torch.sqrt(var + 1.0))
    torch.testing.assert_close(out[0, 1, 0, 0], (0.0 - 1.5) / torch.sqrt(var + 1.0))
    torch.testing.assert_close(out[0, :, :, 2:], torch.zeros(2, 2, 2))  # constant patch -> 0 (eps keeps it finite)


def test_masked_dense_loss_scores_masked_valid_pixels_and_skips_samples_without_masked_patches():
    predictions = torch.zeros(2, 1, 2, 4)
    targets = torch.arange(16.0).view(2, 1, 2, 4)
    mask = torch.tensor([[True, False], [False, False]])  # sample 0: left patch; sample 1: nothing scored
    # sample 0 left patch holds 0, 1, 4, 5 -> mse mean (0 + 1 + 16 + 25) / 4; sample 1 is NaN and dropped
    assert masked_dense_loss(predictions, targets, mask, 2).item() == pytest.approx(42 / 4)
    valid = torch.ones(2, 2, 4, dtype=torch.bool)
    valid[0, 1, 1] = False  # drop the pixel holding 5
    assert masked_dense_loss(predictions, targets, mask, 2, valid_mask=valid).item() == pytest.approx(17 / 3)
    assert masked_dense_loss(predictions, targets, mask, 2, loss_type="l1").item() == pytest.approx(10 / 4)


def test_masked_dense_cross_entropy_ignores_the_ignore_index():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1] = math.log(2.0)  # softmax over 3 classes at every pixel: (1/4, 1/2, 1/4)
    labels = torch.tensor([[[1, 0], [7, 2]]])  # 7 ignored
    loss = masked_dense_loss(logits, labels, None, 2, loss_type="cross_entropy", ignore_index=7)
    assert loss.item() == pytest.approx((math.log(2) + math.log(4) + math.log(4)) / 3)


def test_standardize_depth_trims_outliers_before_the_statistics():
    depth = torch.tensor([[[[0.0, 1, 2, 3, 4, 5, 6, 7, 8, 1000.0]]]])  # (1, 1, 1, 10)
    # trim 10 % at each end: 1..8 remain, mean 4.5, unbiased variance 6; eps 0.5
    out = standardize_depth(depth, trim_fraction=0.1, eps=0.5)
    torch.testing.assert_close(out, (depth - 4.5) / math.sqrt(6.5))
    valid = torch.ones(1, 1, 10, dtype=torch.bool)
    valid[0, 0, 9] = False  # the outlier is invalid: 9 values 0 .. 8 remain, kept [int(0.9), int(8.1)) = 0 .. 7
    masked = standardize_depth(depth, trim_fraction=0.1, eps=0.5, valid_mask=valid)
    torch.testing.assert_close(masked[0, 0, 0, :9], (depth[0, 0, 0, :9] - 3.5) / math.sqrt(6.5))
    assert masked[0, 0, 0, 9].item() == 0.0


def test_dense_objectives_name_bad_shapes():
    with pytest.raises(ValueError, match="not divisible by the patch size 3"):
        normalize_dense_patches(torch.zeros(1, 3, 4, 4), 3)
    with pytest.raises(ValueError, match=r"bool_masked_pos must have shape \(batch, num_patches\) = \(1, 2\)"):
        masked_dense_loss(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4), torch.ones(1, 3, dtype=torch.bool), 2)
    with pytest.raises(ValueError, match="valid_mask must have shape"):
        masked_dense_loss(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4), None, 2, valid_mask=torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match="Targets must have the predictions' shape"):
        masked_dense_loss(torch.zeros(1, 1, 2, 4), torch.zeros(1, 2, 2, 4), None, 2)
