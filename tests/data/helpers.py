"""Small image folders for the data tests: generated JPEGs plus deliberately broken files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def gradient_image(height: int, width: int, seed: int) -> Image.Image:
    """A smooth RGB image (ramps + a little noise), distinct per seed."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    channels = [(xs * (2 + c) + ys * (1 + seed % 3) + 40 * c + rng.normal(0, 3, xs.shape)) % 256 for c in range(3)]
    return Image.fromarray(np.stack(channels, axis=-1).astype(np.uint8))


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_image_folder(root: Path, per_class: int = 3, broken: bool = True) -> Path:
    """`root/{cat,dog}/N.jpg` (per_class each) and, if `broken`, a garbage `.jpg` and a truncated `.jpg` in dog/.

    Returns:
        root.
    """
    for label, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            gradient_image(40, 48, seed=10 * label + index).save(root / name / f"{index}.jpg", quality=90)
    if broken:
        (root / "dog" / "garbage.jpg").write_bytes(b"this is not a JPEG file")
        valid = jpeg_bytes(gradient_image(40, 48, seed=99))
        (root / "dog" / "truncated.jpg").write_bytes(valid[: len(valid) // 2])
    return root
