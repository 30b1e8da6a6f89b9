"""MVP pre-training step speed and memory: eager vs SDPA, against transformers' BeitForMaskedImageModeling.

One training step = forward + backward + AdamW step (default for-loop AdamW, weight decay 0.05, betas (0.9, 0.95),
as the CPU anchors in ../shared/notes/cpu-anchors.md), batch 8, BEiT block mask of 75/196 patches at 224 px
(6/16 at 64 px). Both students have the same trunk (BEiT-base: shared relative position bias, layer-scale 0.1,
mask token); they differ in the head and target: MVP regresses 512-d CLIP features (cosine), BEiT classifies into an
8192-token vocabulary. The MVP rows take precomputed teacher features; the `+teacher` row adds a frozen
CLIP ViT-B/16-sized vision tower (random weights, same FLOPs) computing them every step.

    python benchmarks/bench_mvp.py                 # all rows, 3 interleaved rounds
    python benchmarks/bench_mvp.py --rows tiny-mvp-sdpa tiny-beit-sdpa --rounds 1
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Row, main

BATCH = 8
SIZES = {
    # name: (image_size, trunk kwargs, masked patches)
    "tiny": (64, dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512), 6),
    "base": (224, dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072), 75),
}


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, betas=(0.9, 0.95))


def _mask(image_size: int, num_masked: int) -> torch.Tensor:
    from hf_unified_pretrain.masking import block_mask

    grid = image_size // 16
    return block_mask(
        BATCH, grid, num_masked, min_block_tokens=min(16, num_masked), generator=torch.Generator().manual_seed(0)
    )


def build_mvp(size: str, attention: str, with_teacher: bool = False):
    from hf_unified_pretrain.models.mvp import MVPConfig, MVPForPreTraining

    image_size, trunk, num_masked = SIZES[size]
    config = MVPConfig(
        image_size=image_size,
        patch_size=16,
        layer_scale_init_value=0.1,
        teacher_dim=512,
        use_shared_relative_position_bias=True,
        use_relative_position_bias=False,
        **trunk,
    )
    model = MVPForPreTraining._from_config(config, attn_implementation=attention).train()
    optimizer = _optimizer(model)
    pixel_values = torch.randn(BATCH, 3, image_size, image_size)
    bool_masked_pos = _mask(image_size, num_masked)
    grid = image_size // 16
    teacher_features = torch.randn(BATCH, grid * grid, 512)
    teacher = None
    if with_teacher:
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        teacher = CLIPVisionModelWithProjection(
            CLIPVisionConfig(image_size=image_size, patch_size=16, projection_dim=512, **trunk)
        ).eval()

    def step() -> None:
        features = teacher_features
        if teacher is not None:
            with torch.no_grad():
                tokens = teacher(pixel_values=pixel_values).last_hidden_state[:, 1:]
                features = teacher.visual_projection(teacher.vision_model.post_layernorm(tokens))
        loss = model(pixel_values, bool_masked_pos=bool_masked_pos, teacher_features=features).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, BATCH


def build_beit(size: str, attention: str):
    from transformers import BeitConfig, BeitForMaskedImageModeling

    image_size, trunk, num_masked = SIZES[size]
    config = BeitConfig(
        image_size=image_size,
        patch_size=16,
        use_mask_token=True,
        vocab_size=8192,
        use_shared_relative_position_bias=True,
        use_relative_position_bias=False,
        use_absolute_position_embeddings=False,
        layer_scale_init_value=0.1,
        **trunk,
    )
    model = BeitForMaskedImageModeling._from_config(config, attn_implementation=attention).train()
    optimizer = _optimizer(model)
    pixel_values = torch.randn(BATCH, 3, image_size, image_size)
    bool_masked_pos = _mask(image_size, num_masked)
    labels = torch.randint(0, 8192, (int(bool_masked_pos.sum()),))

    def step() -> None:
        loss = model(pixel_values, bool_masked_pos=bool_masked_pos, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, BATCH


ROWS = []
for _size in SIZES:
    ROWS += [
        Row(f"{_size}-beit-sdpa", lambda s=_size: build_beit(s, "sdpa"), group=_size),
        Row(f"{_size}-beit-eager", lambda s=_size: build_beit(s, "eager"), group=_size),
        Row(f"{_size}-mvp-sdpa", lambda s=_size: build_mvp(s, "sdpa"), group=_size),
        Row(f"{_size}-mvp-eager", lambda s=_size: build_mvp(s, "eager"), group=_size),
        Row(f"{_size}-mvp-sdpa+teacher", lambda s=_size: build_mvp(s, "sdpa", with_teacher=True), group=_size),
    ]

if __name__ == "__main__":
    main(ROWS, "MVP pre-training step (batch 8), ratios vs BeitForMaskedImageModeling sdpa of the same size")
