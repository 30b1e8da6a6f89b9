"""High-bit-depth images are rescaled to 8 bits, not clipped."""

import io

import numpy as np
import pytest
from PIL import Image

from hf_unified_pretrain.data import MaskedImageCollator, decode_image, to_rgb


def sixteen_bit_png() -> tuple[bytes, np.ndarray]:
    # a ramp over most of the 16-bit range (what a scientific or HDR-ish grey photograph stores)
    values = (np.arange(16 * 24).reshape(16, 24) * 170).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    return buffer.getvalue(), values


def test_a_16_bit_png_keeps_its_contrast_instead_of_saturating():
    data, values = sixteen_bit_png()
    assert Image.open(io.BytesIO(data)).mode == "I;16"  # the file really is 16-bit
    image = decode_image({"bytes": data, "path": None})
    decoded = np.asarray(image)
    assert image.mode == "RGB" and decoded.shape == (16, 24, 3)
    expected = np.round(values / 65535 * 255).astype(np.uint8)
    np.testing.assert_array_equal(decoded[..., 0], expected)
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])
    # PIL's own conversion clips every value above 255: almost the whole ramp would be white
    clipped = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[..., 0]
    assert (clipped == 255).mean() > 0.95 and (decoded[..., 0] == 255).mean() < 0.01
    assert decoded[0, 0, 0] == 0 and decoded[-1, -1, 0] == round(values[-1, -1] / 65535 * 255)


@pytest.mark.parametrize(
    "values,mode,expected",
    [
        (np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F", [0, 128, 255]),  # normalised floats
        (np.array([[0.0, 100.0, 255.0]], dtype=np.float32), "F", [0, 100, 255]),  # 8-bit range floats
        (np.array([[0, 1, 200]], dtype=np.int32), "I", [0, 1, 200]),  # 8-bit values in an int32 image
        (np.array([[0, 32768, 65535]], dtype=np.int32), "I", [0, 128, 255]),  # 16-bit values (older PNG readers)
    ],
)
def test_32_bit_modes_are_scaled_from_the_range_their_values_occupy(values, mode, expected):
    image = Image.fromarray(values)
    assert image.mode == mode
    assert np.asarray(to_rgb(image))[0, :, 1].tolist() == expected


def test_8_bit_images_are_converted_as_before():
    grey = Image.fromarray(np.array([[0, 7, 255]], dtype=np.uint8))
    assert np.asarray(to_rgb(grey))[0].tolist() == [[0, 0, 0], [7, 7, 7], [255, 255, 255]]


def test_the_collator_names_an_empty_batch():
    with pytest.raises(ValueError, match="empty list of examples.*batch size 0"):
        MaskedImageCollator()([])
