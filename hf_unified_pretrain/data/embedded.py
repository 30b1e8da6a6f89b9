"""The embedded default dataset: seeded random crops of the real photographs shipped with scikit-image.

When no dataset is given, pre-training runs on this small set so that every script works on a fresh machine, offline,
with nothing but the package's own dependencies. Sources are the photographs bundled in the `scikit-image` wheel
(`skimage.data`; see its documentation for each image's licence, all free to use): nine colour photographs
(astronaut, chelsea, coffee, rocket, hubble_deep_field, retina, immunohistochemistry and the two views of
`stereo_motorcycle`) and seven greyscale ones (camera, coins, moon, clock, brick, grass, gravel; replicated to RGB).
Loaders that need a download are not used.

Each crop takes a photo in turn (crop i uses source i mod 16), covers 10-100 % of its area at an aspect ratio in
[3/4, 4/3] at a position drawn from `numpy.random.default_rng(seed)`, and is resized (bicubic) to
`image_size` x `image_size` and stored as a quality-95 JPEG. The default (256 crops of 224 px) builds in about a
second and is cached per process, so repeated calls return identical images. Crops of one photo overlap, so a
validation split made from these crops is not independent of the training crops: use it to see that training runs,
not to measure generalisation.
"""

from __future__ import annotations

import functools
import io
import logging

import numpy as np
from datasets import Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

# The crop side and the number of crops of the embedded default dataset (also the defaults of the run scripts).
DEFAULT_IMAGE_SIZE = 224
DEFAULT_NUM_EMBEDDED_IMAGES = 256

logger = logging.getLogger(__name__)

# skimage.data loader name -> how to get the photograph out of its return value.
EMBEDDED_SOURCES: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "stereo_motorcycle:left",
    "stereo_motorcycle:right",
    "camera",
    "coins",
    "moon",
    "clock",
    "brick",
    "grass",
    "gravel",
)


def _load_source(name: str) -> np.ndarray:
    import skimage.data

    loader, _, view = name.partition(":")
    result = getattr(skimage.data, loader)()
    if loader == "stereo_motorcycle":  # returns (left, right, disparity)
        result = result[0] if view == "left" else result[1]
    array = np.asarray(result)
    if array.dtype != np.uint8:
        raise ValueError(f"skimage.data.{loader} returned dtype {array.dtype}, expected uint8.")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


@functools.lru_cache(maxsize=1)
def load_embedded_photographs() -> tuple[tuple[str, Image.Image], ...]:
    """The embedded source photographs as (name, RGB PIL image) pairs, loaded offline from scikit-image.

    Raises:
        RuntimeError: No photograph could be loaded (scikit-image missing or broken).
    """
    photos = []
    for name in EMBEDDED_SOURCES:
        try:
            photos.append((name, Image.fromarray(_load_source(name))))
        except Exception as error:  # noqa: BLE001 -- a future scikit-image may drop or move a sample image
            logger.warning("Embedded dataset: skipping skimage.data source %r (%s).", name, error)
    if not photos:
        raise RuntimeError(
            "The embedded default dataset needs scikit-image's bundled photographs (`pip install scikit-image`), "
            "and none could be loaded. Pass dataset_name or train_dir instead."
        )
    return tuple(photos)


@functools.lru_cache(maxsize=4)
def _embedded_crops(num_images: int, image_size: int, seed: int) -> tuple[tuple[bytes, ...], tuple[str, ...]]:
    photos = load_embedded_photographs()
    rng = np.random.default_rng(seed)
    encoded, sources = [], []
    for index in range(num_images):
        name, photo = photos[index % len(photos)]
        width, height = photo.size
        area_fraction = rng.uniform(0.1, 1.0)
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        crop_width = min(width, max(1, round(np.sqrt(area_fraction * width * height * aspect))))
        crop_height = min(height, max(1, round(np.sqrt(area_fraction * width * height / aspect))))
        left = int(rng.integers(0, width - crop_width + 1))
        top = int(rng.integers(0, height - crop_height + 1))
        crop = photo.resize(
            (image_size, image_size),
            resample=Image.Resampling.BICUBIC,
            box=(left, top, left + crop_width, top + crop_height),
        )
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=95)
        encoded.append(buffer.getvalue())
        sources.append(name)
    return tuple(encoded), tuple(sources)


def load_embedded_dataset(
    num_images: int = DEFAULT_NUM_EMBEDDED_IMAGES, image_size: int = DEFAULT_IMAGE_SIZE, seed: int = 0
) -> Dataset:
    """Builds the embedded default dataset (see the module docstring).

    Args:
        num_images: Number of crops.
        image_size: Side of the square crops in pixels.
        seed: Seed of the crop positions; the same arguments always give the same images.

    Returns:
        In-memory `Dataset` with columns `image` (JPEG-encoded `Image` feature, decodes to RGB PIL
        `image_size` x `image_size`) and `source` (the skimage.data photograph the crop comes from).
    """
    if num_images <= 0 or image_size <= 0:
        raise ValueError(f"num_images and image_size must be positive, got {num_images} and {image_size}.")
    encoded, sources = _embedded_crops(int(num_images), int(image_size), int(seed))
    features = Features({"image": ImageFeature(), "source": Value("string")})
    return Dataset.from_dict(
        {"image": [{"bytes": data, "path": None} for data in encoded], "source": list(sources)}, features=features
    )
