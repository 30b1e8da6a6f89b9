"""Tiny teacher folders saved to tmp: a CLIP vision model with projection, a ViT, a text model."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    ViTConfig,
    ViTModel,
)

TEACHER_MEAN = [0.5, 0.4, 0.3]
TEACHER_STD = [0.2, 0.25, 0.3]


def tiny_clip_vision() -> CLIPVisionModelWithProjection:
    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    return CLIPVisionModelWithProjection(config).eval()


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A tiny CLIPVisionModelWithProjection with its own preprocessor_config.json (non-CLIP mean/std)."""
    folder = tmp_path_factory.mktemp("clip_teacher")
    tiny_clip_vision().save_pretrained(folder)
    processor = {"image_processor_type": "CLIPImageProcessor", "image_mean": TEACHER_MEAN, "image_std": TEACHER_STD}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit_teacher")
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def text_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text_model")
    config = CLIPTextConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, vocab_size=99
    )
    CLIPTextModel(config).save_pretrained(folder)
    return folder
