"""AMDIM pre-training step speed and memory at 32 px and 128 px, against HF ViTMAE-base (SDPA) in the same run.

One AMDIM step = both views through the encoder + the NCE terms (1→5, 1→7, 5→5, regulariser) + both online
classifiers on 1000 classes (as the original's `task_self_supervised._train`), backward and an AdamW step with the
original's betas (0.8, 0.999) and weight decay 1e-5 (default for-loop AdamW, like the CPU anchors). One sample is
two views. The reference row is the anchor of ../shared/notes/cpu-anchors.md: `ViTMAEForPreTraining` with the
vit-mae-base config, mask 0.75, SDPA, batch 8 at 224 px. The original's figure there: AMDIM 128 px, ndf 128 /
rkhs 1024 / depth 3 = 3.76 samples/s = 1.05x ViTMAE-base SDPA.

    python benchmarks/bench_amdim.py                       # all rows, 3 interleaved rounds
    python benchmarks/bench_amdim.py --rounds 1 --warmup 2 --steps 3
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Row, main

BATCH = 8


def build_vitmae():
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    model = ViTMAEForPreTraining._from_config(ViTMAEConfig(), attn_implementation="sdpa").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, betas=(0.9, 0.95))
    pixel_values = torch.randn(BATCH, 3, 224, 224)

    def step() -> None:
        model(pixel_values=pixel_values).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, BATCH


def build_amdim(image_size: int, ndf: int, n_rkhs: int, n_depth: int, channels_last: bool = False):
    from hf_unified_pretrain.models.amdim import AMDIMConfig, AMDIMForPreTraining

    config = AMDIMConfig(
        image_size=image_size, ndf=ndf, n_rkhs=n_rkhs, n_depth=n_depth, num_labels=1000, channels_last=channels_last
    )
    model = AMDIMForPreTraining(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-5, betas=(0.8, 0.999))
    generator = torch.Generator().manual_seed(0)
    view_1 = torch.randn(BATCH, 3, image_size, image_size, generator=generator)
    view_2 = torch.randn(BATCH, 3, image_size, image_size, generator=generator)
    labels = torch.randint(0, 1000, (BATCH,), generator=generator)

    def step() -> None:
        model(view_1, view_2, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, BATCH


ROWS = [
    Row("vitmae-base-sdpa", build_vitmae, group="anchor"),
    Row("amdim-128-ndf128", lambda: build_amdim(128, 128, 1024, 3), group="anchor"),
    Row("amdim-128-ndf128-nhwc", lambda: build_amdim(128, 128, 1024, 3, channels_last=True), group="anchor"),
    Row("amdim-128-ndf64", lambda: build_amdim(128, 64, 512, 3), group="anchor"),
    Row("amdim-32-ndf128", lambda: build_amdim(32, 128, 1024, 3), group="anchor"),
]

if __name__ == "__main__":
    main(ROWS, "AMDIM pre-training step (batch 8, two views per sample), ratios vs ViTMAE-base SDPA")
