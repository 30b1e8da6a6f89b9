"""plot_reconstruction: pixel and feature variants write readable grids; the panels hold the expected pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hf_unified_pretrain.objectives import normalize_patches, patchify, unpatchify
from hf_unified_pretrain.training import plot_reconstruction
from hf_unified_pretrain.training.plots import (
    DENORMALISED_LABEL,
    NORMALISED_TARGET_LABEL,
    RAW_PREDICTION_LABEL,
    _to_display,
    reconstruction_panels,
)

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def _inputs(batch=3, size=32, patch=8):
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.rand(batch, 3, size, size, generator=generator) * 2 - 1
    mask = torch.zeros(batch, (size // patch) ** 2, dtype=torch.bool)
    mask[:, ::3] = True
    return pixel_values, mask


def _png(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_pixel_reconstruction_grid(tmp_path):
    pixel_values, mask = _inputs()
    reconstruction = patchify(pixel_values, 8) + 0.1 * torch.randn(3, 16, 192)

    path = plot_reconstruction(
        pixel_values,
        mask,
        tmp_path / "rec.png",
        patch_size=8,
        reconstruction=reconstruction,
        image_mean=MEAN,
        image_std=STD,
    )

    image = _png(path)
    assert image.shape[0] > 300 and image.shape[1] > 4 * 150  # 3 rows x 4 panels
    assert np.unique(image.reshape(-1, 3), axis=0).shape[0] > 100


def test_norm_pix_figure_draws_six_labelled_panels(tmp_path):
    pixel_values, mask = _inputs(batch=1)
    perfect = normalize_patches(patchify(pixel_values, 8))
    common = dict(patch_size=8, image_mean=MEAN, image_std=STD)
    norm_png = _png(
        plot_reconstruction(
            pixel_values, mask, tmp_path / "a.png", reconstruction=perfect, norm_pix_loss=True, **common
        )
    )
    plain_png = _png(
        plot_reconstruction(pixel_values, mask, tmp_path / "b.png", reconstruction=pixel_values, **common)
    )
    assert norm_png.shape[1] == plain_png.shape[1] * 6 // 4  # two more panels: normalised target, raw prediction


def test_feature_target_grid(tmp_path):
    pixel_values, mask = _inputs(batch=2)
    targets = torch.randn(2, 16, 5)

    path = plot_reconstruction(
        pixel_values,
        mask,
        tmp_path / "feat.png",
        patch_size=8,
        predictions=targets + 0.3 * torch.randn(2, 16, 5),
        targets=targets,
        image_mean=MEAN,
        image_std=STD,
    )

    image = _png(path)
    assert image.shape[0] > 200 and image.shape[1] > 3 * 150


def test_display_undoes_normalisation():
    pixels = torch.full((1, 3, 2, 2), 1.0)
    np.testing.assert_allclose(_to_display(pixels, MEAN, STD), np.full((1, 2, 2, 3), 0.75))


def test_bad_arguments(tmp_path):
    pixel_values, mask = _inputs()
    with pytest.raises(ValueError, match="either `reconstruction`"):
        plot_reconstruction(pixel_values, mask, tmp_path / "x.png", patch_size=8)
    with pytest.raises(ValueError, match="bool_masked_pos has 15 patches"):
        plot_reconstruction(pixel_values, mask[:, 1:], tmp_path / "x.png", patch_size=8, reconstruction=pixel_values)
    with pytest.raises(ValueError, match=r"\(B, 16, D\)"):
        plot_reconstruction(
            pixel_values,
            mask,
            tmp_path / "x.png",
            patch_size=8,
            predictions=torch.randn(3, 4, 5),
            targets=torch.randn(3, 4, 5),
        )


def _non_square_inputs():
    # a 2x3 patch grid (16 x 24 pixels), patches of 8, an asymmetric mask
    pixel_values = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mask = torch.tensor([[True, False, False, True, True, False], [False, True, False, False, False, True]])
    return pixel_values, mask


def test_norm_pix_panels_show_the_raw_prediction_labelled_beside_the_de_normalised_one():
    pixel_values, mask = _non_square_inputs()
    untrained = torch.zeros(2, 6, 8 * 8 * 3)  # predicts z = 0 everywhere: knows nothing about the image
    panels = reconstruction_panels(pixel_values, mask, (2, 3), 8, untrained, True, MEAN, STD)
    labels = [label for label, _ in panels]
    assert labels == [
        "original",
        "masked",
        NORMALISED_TARGET_LABEL,
        RAW_PREDICTION_LABEL,
        DENORMALISED_LABEL,
        "prediction de-normalised\n+ visible patches",
    ]
    assert "raw" in RAW_PREDICTION_LABEL and "borrows each true patch's mean" in DENORMALISED_LABEL
    arrays = dict(panels)
    assert all(array.shape == (2, 16, 24, 3) for array in arrays.values())
    # the raw prediction of an untrained model is flat grey: it shows that nothing was learned ...
    np.testing.assert_allclose(arrays[RAW_PREDICTION_LABEL], 0.5)
    # ... while the de-normalised picture shows every patch at its true mean (over its p*p*C values, as MAE's
    # norm_pix_loss normalises), borrowed from the target
    display = _to_display(pixel_values, MEAN, STD)
    patch_means = display.reshape(2, 2, 8, 3, 8, 3).mean(axis=(2, 4, 5))  # (B, h, w)
    expected = np.repeat(np.repeat(patch_means, 8, axis=1), 8, axis=2)[..., None].repeat(3, axis=-1)
    np.testing.assert_allclose(arrays[DENORMALISED_LABEL], np.clip(expected, 0, 1), atol=1e-5)
    # the normalised target is drawn on the same fixed z scale: 0.5 + z / 4 of each pixel within its patch
    z = normalize_patches(patchify(pixel_values, 8))
    z_image = unpatchify(0.5 + 0.25 * z, 8, (2, 3), 3).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(arrays[NORMALISED_TARGET_LABEL], z_image, atol=1e-6)


def test_a_perfect_norm_pix_prediction_matches_its_target_in_both_spaces():
    pixel_values, mask = _non_square_inputs()
    perfect = normalize_patches(patchify(pixel_values, 8))
    arrays = dict(reconstruction_panels(pixel_values, mask, (2, 3), 8, perfect, True, MEAN, STD))
    np.testing.assert_allclose(arrays[RAW_PREDICTION_LABEL], arrays[NORMALISED_TARGET_LABEL], atol=1e-6)
    np.testing.assert_allclose(arrays[DENORMALISED_LABEL], arrays["original"], atol=1e-4)
    pasted = arrays["prediction de-normalised\n+ visible patches"]
    np.testing.assert_allclose(pasted, arrays["original"], atol=1e-4)


def test_without_norm_pix_loss_the_prediction_is_drawn_as_is():
    pixel_values, mask = _non_square_inputs()
    prediction = patchify(pixel_values, 8) * 0.5
    arrays = dict(reconstruction_panels(pixel_values, mask, (2, 3), 8, prediction, False, MEAN, STD))
    assert list(arrays) == ["original", "masked", "reconstruction", "reconstruction\n+ visible patches"]
    np.testing.assert_allclose(arrays["reconstruction"], _to_display(pixel_values * 0.5, MEAN, STD), atol=1e-6)
    masked_pixels = np.repeat(np.repeat(mask.view(2, 2, 3).numpy(), 8, axis=1), 8, axis=2)
    np.testing.assert_allclose(arrays["masked"][masked_pixels], 0.5)
    np.testing.assert_allclose(arrays["masked"][~masked_pixels], arrays["original"][~masked_pixels])


def test_the_run_scripts_figure_of_an_untrained_norm_pix_model_shows_its_raw_prediction(tmp_path, monkeypatch):
    from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNForPreTraining
    from hf_unified_pretrain.training import draw_pixel_reconstruction, plots

    drawn = {}

    def recording(*args, **kwargs):
        panels = reconstruction_panels(*args, **kwargs)
        drawn.update(panels)
        return panels

    monkeypatch.setattr(plots, "reconstruction_panels", recording)
    model = ITPNForPreTraining(ITPNConfig.from_preset("itpn-tiny-test")).eval()
    assert model.config.norm_pix_loss
    side = model.config.image_size
    batch = {"pixel_values": torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0)).clamp(-2, 2)}
    with torch.no_grad():
        path = draw_pixel_reconstruction(model, batch, tmp_path)
    assert path.is_file() and RAW_PREDICTION_LABEL in drawn and DENORMALISED_LABEL in drawn
    # untrained: the raw prediction is far from the normalised target it is trained to match
    raw, target = drawn[RAW_PREDICTION_LABEL], drawn[NORMALISED_TARGET_LABEL]
    assert np.abs(raw - target).mean() > 0.05
