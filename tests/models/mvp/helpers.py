"""Tiny MVP configurations and fixtures shared by the MVP test modules."""

from __future__ import annotations

import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from hf_unified_pretrain.models.mvp import MVPConfig

BATCH, IMAGE, PATCH, TEACHER_DIM = 2, 32, 8, 24
GRID = IMAGE // PATCH
NUM_PATCHES = GRID * GRID


def tiny_config(**overrides) -> MVPConfig:
    """The "tiny" preset: 32 px, 8 px patches (4x4 grid), 2 blocks of width 32, 6 masked patches, 24-d teacher."""
    return MVPConfig.from_preset("tiny", **overrides)


def pixels(batch: int = BATCH, size: int = IMAGE, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def fixed_mask(batch: int = BATCH, num_patches: int = NUM_PATCHES, num_masked: int = 6) -> torch.Tensor:
    """A deterministic mask with a different masked set per sample."""
    mask = torch.zeros(batch, num_patches, dtype=torch.bool)
    for row in range(batch):
        mask[row, (torch.arange(num_masked) * 2 + row) % num_patches] = True
    return mask


def teacher_features(batch: int = BATCH, num_patches: int = NUM_PATCHES, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, num_patches, TEACHER_DIM, generator=torch.Generator().manual_seed(seed))


def tiny_clip_teacher_model() -> CLIPVisionModelWithProjection:
    """A CLIP vision tower whose 8 px patches at 32 px give the student's 4x4 grid and 24-d projected tokens."""
    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=IMAGE,
        patch_size=PATCH,
        projection_dim=TEACHER_DIM,
    )
    return CLIPVisionModelWithProjection(config).eval()
