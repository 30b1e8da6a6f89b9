"""M3I has no image processor class of its own: the registry resolves its backbone's, sized to M3IConfig.image_size
(which may differ from the backbone config's), and `save_backbone` writes it so the folder is pipeline-ready."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, pipeline

import hf_unified_pretrain  # noqa: F401  (registers the Auto classes)
from hf_unified_pretrain.models.internimage import InternImageImageProcessor, InternImageModel
from hf_unified_pretrain.models.m3i import M3IConfig, M3IForPreTraining
from hf_unified_pretrain.models.mvp import MVPImageProcessor
from hf_unified_pretrain.models.registry import image_processor_for


def _photo(width: int, height: int) -> Image.Image:
    generator = np.random.default_rng(0)
    return Image.fromarray(generator.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("preset", "image_size", "processor_class"),
    [("tiny", 96, InternImageImageProcessor), ("tiny-vit", 32, MVPImageProcessor)],
)
def test_image_processor_for_an_m3i_config_is_the_backbones_at_the_m3i_size(preset, image_size, processor_class):
    config = M3IConfig.from_preset(preset, image_size=image_size)
    processor = image_processor_for(config)
    assert type(processor) is processor_class
    pixels = processor(_photo(2 * image_size + 5, image_size + 11), return_tensors="pt").pixel_values
    assert pixels.shape == (1, 3, image_size, image_size)


def test_saved_backbone_folder_is_pipeline_ready_at_the_m3i_size(tmp_path):
    # 96 px pre-training on a backbone config that says 64: the processor must follow the M3I size.
    config = M3IConfig.from_preset("tiny", image_size=96)
    assert config.backbone_config.image_size == 64
    M3IForPreTraining(config).save_backbone(tmp_path)

    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(processor) is InternImageImageProcessor
    image = _photo(150, 110)
    pixels = processor(image, return_tensors="pt").pixel_values
    assert pixels.shape == (1, 3, 96, 96)
    with torch.no_grad():
        expected = InternImageModel.from_pretrained(tmp_path).eval()(pixels).last_hidden_state
    extractor = pipeline("image-feature-extraction", model=str(tmp_path), device="cpu")
    torch.testing.assert_close(extractor(image, return_tensors=True), expected)
