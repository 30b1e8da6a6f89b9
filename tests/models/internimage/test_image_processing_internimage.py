"""InternImageImageProcessor: transformers' ImageProcessingTestMixin (PIL backend; harness: tests/hf_testers.py) and
the original's evaluation transform (shorter side resized to the model size, bicubic, center crop, ImageNet
normalisation) at the released 224 px and, through `image_processor_for`, at other sizes."""

from __future__ import annotations

import unittest

import numpy as np
import pytest
import torch
from PIL import Image

from hf_unified_pretrain.models.internimage import InternImageConfig, InternImageImageProcessor
from hf_unified_pretrain.models.registry import image_processor_for
from tests.hf_testers import CenterCropImageProcessingTester, ImageProcessingTestMixin, PilOnlyImageProcessingOverrides


class InternImageImageProcessingTester(CenterCropImageProcessingTester):
    image_processing_classes_by_backend = {"pil": InternImageImageProcessor}


class InternImageImageProcessingTest(PilOnlyImageProcessingOverrides, ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = InternImageImageProcessingTester


def _photo(width: int, height: int) -> Image.Image:
    generator = np.random.default_rng(0)
    return Image.fromarray(generator.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def _original_eval_transform(image: Image.Image, size: int) -> torch.Tensor:
    """The original's `build_transform(is_train=False)` with TEST.CROP (torchvision Resize(size) + CenterCrop(size) +
    ToTensor + Normalize), written with PIL and numpy.

    When the resized image exceeds the crop by an odd number of pixels, torchvision and transformers put the extra pixel
    on opposite sides (a one-pixel shift); the test images leave even margins so the two must agree exactly."""
    width, height = image.size
    if width <= height:
        new_width, new_height = size, int(size * height / width)
    else:
        new_width, new_height = int(size * width / height), size
    resized = image.resize((new_width, new_height), Image.Resampling.BICUBIC)
    left, top = round((new_width - size) / 2.0), round((new_height - size) / 2.0)
    cropped = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
    return torch.from_numpy(((cropped - mean) / std).transpose(2, 0, 1))


@pytest.mark.parametrize(("width", "height"), [(328, 260), (260, 400)])
def test_defaults_are_the_original_evaluation_transform(width, height):
    image = _photo(width, height)
    pixel_values = InternImageImageProcessor()(image, return_tensors="pt").pixel_values
    assert pixel_values.shape == (1, 3, 224, 224)
    # the crop keeps the full shorter side: no 256-then-224 (timm's 0.875) border is cut off
    torch.testing.assert_close(pixel_values[0], _original_eval_transform(image, 224), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [64, 96])
def test_image_processor_for_other_sizes_keeps_the_crop_ratio(size):
    config = InternImageConfig.from_preset("internimage-t", image_size=size)
    processor = image_processor_for(config)
    assert processor.size == {"shortest_edge": size}
    assert processor.crop_size == {"height": size, "width": size}
    image = _photo(5 * size // 2, 2 * size)
    pixel_values = processor(image, return_tensors="pt").pixel_values
    torch.testing.assert_close(pixel_values[0], _original_eval_transform(image, size), atol=1e-5, rtol=1e-5)
    assert InternImageImageProcessor.size == {"shortest_edge": 224}  # the class default is untouched
