"""iTPN pre-training step and backbone speed/memory: mask ratio 0.75 vs 0.0 (token dropping), eager vs SDPA.

Pre-training step = forward + backward + AdamW (default for-loop AdamW, weight decay 0.05, betas (0.9, 0.95)), batch
8, pixel target with the per-patch normalised loss, as the CPU anchors in ../shared/notes/cpu-anchors.md measure the
original `iTPNMaskedAutoencoder`. The reference row of each size is transformers' `ViTMAEForPreTraining` (SDPA, mask
0.75) so that the ratios can be set beside the anchors' (original iTPN-B = 0.79 × ViTMAE-base SDPA). Mask ratio 0.0
passes an all-False mask: every token goes through the encoder and the loss counts no patch.

    python benchmarks/bench_itpn.py                     # everything, 3 interleaved rounds
    python benchmarks/bench_itpn.py --rows tiny-mae-sdpa tiny-itpn-sdpa-m75 tiny-itpn-sdpa-m0 --rounds 1
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Row, main

BATCH = 8
# name: (image size, ITPNConfig fields, ViTMAEConfig fields of the reference of that size)
SIZES = {
    "tiny": (
        64,
        dict(
            hidden_size=128,
            stage1_depth=1,
            stage2_depth=1,
            num_hidden_layers=4,
            num_attention_heads=4,
            fpn_dim=64,
            fpn_depth=1,
            decoder_hidden_size=64,
            decoder_num_hidden_layers=2,
            decoder_num_attention_heads=4,
        ),
        dict(
            hidden_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=512,
            decoder_hidden_size=64,
            decoder_num_hidden_layers=2,
            decoder_num_attention_heads=4,
            decoder_intermediate_size=256,
        ),
    ),
    "base": (224, dict(), dict()),  # itpn-base-pixel preset (HiViT-B, FPN 256x2, decoder 512d8b) vs vit-mae-base
}


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, betas=(0.9, 0.95))


def _training_step(model, optimizer, inputs) -> None:
    model(**inputs).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def build_itpn(size: str, attention: str, mask_ratio: float):
    from hf_unified_pretrain.masking import random_mask
    from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNForPreTraining

    image_size, fields, _ = SIZES[size]
    config = ITPNConfig.from_preset("itpn-base-pixel", image_size=image_size, drop_path_rate=0.0, **fields)
    model = ITPNForPreTraining._from_config(config, attn_implementation=attention).train()
    optimizer = _optimizer(model)
    num_tokens = (image_size // 16) ** 2
    pixel_values = torch.randn(BATCH, 3, image_size, image_size)
    if mask_ratio > 0:
        mask = random_mask(BATCH, num_tokens, mask_ratio, generator=torch.Generator().manual_seed(0))
    else:
        mask = torch.zeros(BATCH, num_tokens, dtype=torch.bool)
    inputs = {"pixel_values": pixel_values, "bool_masked_pos": mask}
    return (lambda: _training_step(model, optimizer, inputs)), BATCH


def build_vitmae(size: str, attention: str):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    image_size, _, fields = SIZES[size]
    config = ViTMAEConfig(image_size=image_size, patch_size=16, mask_ratio=0.75, norm_pix_loss=True, **fields)
    model = ViTMAEForPreTraining._from_config(config, attn_implementation=attention).train()
    optimizer = _optimizer(model)
    inputs = {"pixel_values": torch.randn(BATCH, 3, image_size, image_size)}
    return (lambda: _training_step(model, optimizer, inputs)), BATCH


def build_backbone(size: str, attention: str):
    from hf_unified_pretrain.models.itpn import ITPNBackbone, ITPNConfig

    _, fields, _ = SIZES[size]
    config = ITPNConfig.from_preset(
        "itpn-base-pixel",
        image_size=224,
        drop_path_rate=0.0,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        **fields,
    )
    model = ITPNBackbone._from_config(config, attn_implementation=attention).eval()
    pixel_values = torch.randn(BATCH, 3, 224, 224)

    def forward() -> None:
        with torch.no_grad():
            model(pixel_values)

    return forward, BATCH


ROWS = []
for _size in SIZES:
    ROWS += [
        Row(f"{_size}-mae-sdpa", lambda s=_size: build_vitmae(s, "sdpa"), group=f"{_size}-step"),
        Row(f"{_size}-itpn-sdpa-m75", lambda s=_size: build_itpn(s, "sdpa", 0.75), group=f"{_size}-step"),
        Row(f"{_size}-itpn-eager-m75", lambda s=_size: build_itpn(s, "eager", 0.75), group=f"{_size}-step"),
        Row(f"{_size}-itpn-sdpa-m0", lambda s=_size: build_itpn(s, "sdpa", 0.0), group=f"{_size}-step"),
        Row(f"{_size}-itpn-eager-m0", lambda s=_size: build_itpn(s, "eager", 0.0), group=f"{_size}-step"),
        Row(f"{_size}-backbone224-sdpa", lambda s=_size: build_backbone(s, "sdpa"), group=f"{_size}-backbone"),
        Row(f"{_size}-backbone224-eager", lambda s=_size: build_backbone(s, "eager"), group=f"{_size}-backbone"),
    ]

if __name__ == "__main__":
    main(
        ROWS, "iTPN pre-training step (batch 8; ratios vs ViTMAE sdpa of the same size) and backbone forward at 224 px"
    )
