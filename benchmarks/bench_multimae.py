"""MultiMAE pre-training step speed/memory: 98 visible of 3x196 tokens vs all tokens visible, vs ViTMAE-base SDPA.

Pre-training step = forward + backward + AdamW (betas (0.9, 0.95), weight decay 0.05), batch 8, RGB + depth +
semseg inputs and the four decoders (rgb, norm_rgb, depth, semseg), as the CPU anchors in
../shared/notes/cpu-anchors.md measure the original MultiMAE-B (0.86x ViTMAE-base SDPA; goal here >= 1.0x). The
reference row of each size is transformers' `ViTMAEForPreTraining` (SDPA, mask 0.75). "all" passes masks keeping every
token visible (the encoder then runs on 3x196 + 1 tokens); the visible budget of "tiny" is scaled like the base's
(1/6 of all tokens).

    python benchmarks/bench_multimae.py                    # everything, 3 interleaved rounds
    python benchmarks/bench_multimae.py --rows tiny-mae-sdpa tiny-multimae-sdpa-v98 --rounds 1
    python benchmarks/bench_multimae.py --flops base-mae-sdpa base-multimae-sdpa-v98   # GEMM work per image
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Row, main

BATCH = 8
# name: (image size, MultiMAEConfig fields, visible tokens, ViTMAEConfig fields of the reference of that size)
SIZES = {
    "tiny": (
        64,
        dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, decoder_hidden_size=64,
             decoder_num_hidden_layers=1, decoder_num_attention_heads=4),
        8,
        dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512,
             decoder_hidden_size=64, decoder_num_hidden_layers=2, decoder_num_attention_heads=4,
             decoder_intermediate_size=256),
    ),
    "base": (224, dict(), 98, dict()),  # multimae-base (768/12/12, decoders 256d2 x4) vs vit-mae-base
}  # fmt: skip


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, betas=(0.9, 0.95))


def _training_step(model, optimizer, inputs) -> None:
    model(**inputs).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def build_multimae(size: str, attention: str, all_visible: bool):
    from hf_unified_pretrain.models.multimae import MultiMAEConfig, MultiMAEForPreTraining

    image_size, fields, visible, _ = SIZES[size]
    config = MultiMAEConfig.from_preset("base", image_size=image_size, num_visible_tokens=visible, **fields)
    model = MultiMAEForPreTraining._from_config(config, attn_implementation=attention).train()
    optimizer = _optimizer(model)
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "modalities": {
            "rgb": torch.randn(BATCH, 3, image_size, image_size, generator=generator),
            "depth": torch.randn(BATCH, 1, image_size, image_size, generator=generator),
            "semseg": torch.randint(0, 133, (BATCH, image_size // 4, image_size // 4), generator=generator),
        }
    }
    num_tokens = (image_size // 16) ** 2
    if all_visible:
        inputs["bool_masked_pos"] = {
            name: torch.zeros(BATCH, num_tokens, dtype=torch.bool) for name in inputs["modalities"]
        }
    else:
        inputs["bool_masked_pos"] = model.mask_generator(dict.fromkeys(inputs["modalities"], num_tokens))(
            BATCH, generator=generator
        )
    return (lambda: _training_step(model, optimizer, inputs)), BATCH


def build_vitmae(size: str, attention: str):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    image_size, _, _, fields = SIZES[size]
    config = ViTMAEConfig(image_size=image_size, patch_size=16, mask_ratio=0.75, norm_pix_loss=True, **fields)
    model = ViTMAEForPreTraining._from_config(config, attn_implementation=attention).train()
    optimizer = _optimizer(model)
    inputs = {"pixel_values": torch.randn(BATCH, 3, image_size, image_size)}
    return (lambda: _training_step(model, optimizer, inputs)), BATCH


ROWS = []
for _size in SIZES:
    ROWS += [
        Row(f"{_size}-mae-sdpa", lambda s=_size: build_vitmae(s, "sdpa"), group=f"{_size}-step"),
        Row(f"{_size}-multimae-sdpa-v98", lambda s=_size: build_multimae(s, "sdpa", False), group=f"{_size}-step"),
        Row(f"{_size}-multimae-eager-v98", lambda s=_size: build_multimae(s, "eager", False), group=f"{_size}-step"),
        Row(f"{_size}-multimae-sdpa-all", lambda s=_size: build_multimae(s, "sdpa", True), group=f"{_size}-step"),
    ]


def print_flops(names: list[str]) -> None:
    """Matrix-multiply FLOPs per image of one training step of each row (torch's FlopCounterMode: GEMMs and
    convolutions, forward + backward; attention kernels and elementwise work are not counted). Load-independent, so
    it shows how much of a ratio is work and how much is efficiency."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(2)
    by_name = {row.name: row for row in ROWS}
    for name in names or [row.name for row in ROWS]:
        step, images = by_name[name].build()
        with FlopCounterMode(display=False) as counter:
            step()
        print(f"{name}: {counter.get_total_flops() / images / 1e9:.1f} GEMM GFLOP/img per training step")


if __name__ == "__main__":
    if "--flops" in sys.argv:  # python benchmarks/bench_multimae.py --flops [ROW ...]
        print_flops(sys.argv[sys.argv.index("--flops") + 1 :])
    else:
        main(ROWS, "MultiMAE pre-training step (batch 8; ratios vs ViTMAE sdpa of the same size)")
