"""plot_reconstruction: pixel and feature variants write readable grids; the panels hold the expected pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hf_unified_pretrain.objectives import normalize_patches, patchify
from hf_unified_pretrain.training import plot_reconstruction
from hf_unified_pretrain.training.plots import _to_display

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


def test_norm_pix_predictions_are_mapped_back_to_the_image(tmp_path):
    """Perfect per-patch-normalised predictions rebuild the original; the figure then shows it twice."""
    pixel_values, mask = _inputs(batch=1)
    perfect = normalize_patches(patchify(pixel_values, 8))
    common = dict(patch_size=8, image_mean=MEAN, image_std=STD)

    perfect_png = _png(
        plot_reconstruction(
            pixel_values, mask, tmp_path / "a.png", reconstruction=perfect, norm_pix_loss=True, **common
        )
    )
    direct_png = _png(
        plot_reconstruction(pixel_values, mask, tmp_path / "b.png", reconstruction=pixel_values, **common)
    )

    assert np.abs(perfect_png.astype(int) - direct_png.astype(int)).max() <= 2


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
