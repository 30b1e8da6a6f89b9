"""InternImage speed: the DCNv3 core vs the original algorithm, and InternImage-T forward / training step vs the same
model running the original algorithm, with ViTMAE-base SDPA as the anchor of ../shared/notes/cpu-anchors.md.

"original" rows swap `benchmarks/dcnv3_reference.py` (the original pure-PyTorch core's algorithm: grid_sample over the
whole map per image and group, written naively) into our model; everything else is identical, so the ratio isolates
the core. Our non-core parts (e.g. the offset/mask/gate heads fused into one GEMM) are in both rows, so that gain only
shows against the anchors: they measured the original InternImage-T code at 7.0 img/s forward and 2.54 img/s per
training step = 1.95x and 0.71x ViTMAE-base SDPA (same machine type), so "vs the original code" is
(t-fwd-ours img/s / vitmae-base-sdpa-step img/s) / 1.95 and (t-step-ours / vitmae-base-sdpa-step) / 0.71.

Rows:
  core-s{1..4}-{original,ours}: one DCNv3 core call, forward + backward, at InternImage-T's stage sizes for a batch of
      8 at 224 px (56x56x64 / 4 groups, 28x28x128 / 8, 14x14x256 / 16, 7x7x512 / 32); "img/s" = calls/s.
  t-fwd-{original,ours}: InternImage-T classifier, eval + no_grad, batch 8, 224 px.
  t-step-{original,ours}: train mode, cross-entropy, backward, AdamW (betas 0.9/0.999, default for-loop), batch 8.
  vitmae-base-sdpa-step: transformers ViTMAEForPreTraining (vit-mae-base config, mask 0.75), same step, batch 8.
  t-fwd-ours-compiled, t-step-ours-compiled (only when named with --rows): our model under `torch.compile`
      (inductor; the DCNv3 core stays two opaque custom ops), the optimizer eager; "build s" is then the compile time.
  t-fwd-free-core, t-step-free-core (only when named): the core replaced by the identity, i.e. everything but the
      sampling; t-*-original / t-*-free-core is the largest speed-up any DCNv3 core could give the model.

    python benchmarks/bench_internimage.py --rounds 1 --warmup 1 --steps 3
    python benchmarks/bench_internimage.py --rows core-s1-original core-s1-ours --rounds 3

On a machine loaded by other processes, 2 threads per row mostly measure OpenMP threads waiting for each other; one
thread per row (`BENCH_THREADS=1`) keeps the ratios meaningful:

    BENCH_THREADS=1 python benchmarks/bench_internimage.py --rows t-fwd-original t-fwd-ours vitmae-base-sdpa-step \
        t-step-original t-step-ours --rounds 2 --warmup 1 --steps 3
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from harness import Row, main

BATCH = 8
# InternImage-T stages at 224 px: (side, channels, groups)
T_STAGES = [(56, 64, 4), (28, 128, 8), (14, 256, 16), (7, 512, 32)]


def _free_core(value, offset, mask, **kwargs):
    """No sampling at all (the offset/mask heads stay in the graph and get zero gradients): a model with this core
    times what every DCNv3 core shares, so original-row time / free-core-row time bounds any core's speed-up."""
    return value + (offset.sum() + mask.sum()) * 0


def _core(implementation: str):
    if implementation == "free":
        return _free_core
    if implementation == "original":
        from dcnv3_reference import dcnv3_core_reference

        return dcnv3_core_reference
    from hf_unified_pretrain.layers.dcnv3 import dcnv3_core

    return dcnv3_core


def build_core(stage: int, implementation: str):
    side, channels, group = T_STAGES[stage]
    generator = torch.Generator().manual_seed(0)
    value = torch.randn(BATCH, side, side, channels, generator=generator, requires_grad=True)
    offset = torch.randn(BATCH, side, side, group * 18, generator=generator).requires_grad_()
    mask = torch.randn(BATCH, side, side, group, 9, generator=generator).softmax(-1).flatten(3).requires_grad_()
    core = _core(implementation)

    def step():
        core(value, offset, mask, group=group).sum().backward()

    return step, 1


def _internimage_t(implementation: str, train: bool):
    from hf_unified_pretrain.models.internimage import (
        InternImageConfig,
        InternImageForImageClassification,
        modeling_internimage,
    )

    modeling_internimage.dcnv3_core = _core(implementation)
    config = InternImageConfig.from_preset("internimage-t", num_labels=1000)
    model = InternImageForImageClassification(config).train(train)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # deformed sampling (the offset/mask heads start at zero)
        for name, parameter in model.named_parameters():
            if ".dcn.offset." in name or ".dcn.mask." in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model


def build_forward(implementation: str, compile_model: bool = False):
    model = _internimage_t(implementation, train=False)
    # compiled rows: inductor, static shapes; the first call (the compile) runs in the build, so the row's build
    # seconds are the compile time
    runner = torch.compile(model, dynamic=False) if compile_model else model
    pixel_values = torch.randn(BATCH, 3, 224, 224)

    def step():
        with torch.no_grad():
            runner(pixel_values)

    if compile_model:
        step()
    return step, BATCH


def build_step(implementation: str, compile_model: bool = False):
    model = _internimage_t(implementation, train=True)
    runner = torch.compile(model, dynamic=False) if compile_model else model
    # the same eager optimizer in every row
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, betas=(0.9, 0.999), weight_decay=0.05)
    pixel_values = torch.randn(BATCH, 3, 224, 224)
    labels = torch.randint(0, 1000, (BATCH,), generator=torch.Generator().manual_seed(1))

    def step():
        runner(pixel_values, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if compile_model:
        step()
    return step, BATCH


def build_vitmae():
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    model = ViTMAEForPreTraining._from_config(ViTMAEConfig(), attn_implementation="sdpa").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, betas=(0.9, 0.95))
    pixel_values = torch.randn(BATCH, 3, 224, 224)

    def step():
        model(pixel_values=pixel_values).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, BATCH


ROWS = [
    row
    for stage in range(4)
    for row in (
        Row(f"core-s{stage + 1}-original", lambda s=stage: build_core(s, "original"), group=f"core-s{stage + 1}"),
        Row(f"core-s{stage + 1}-ours", lambda s=stage: build_core(s, "ours"), group=f"core-s{stage + 1}"),
    )
] + [
    Row("t-fwd-original", lambda: build_forward("original"), group="fwd"),
    Row("t-fwd-ours", lambda: build_forward("ours"), group="fwd"),
    Row("vitmae-base-sdpa-step", build_vitmae, group="step"),
    Row("t-step-original", lambda: build_step("original"), group="step"),
    Row("t-step-ours", lambda: build_step("ours"), group="step"),
]
# Only run when named (--rows t-fwd-original t-fwd-ours t-fwd-ours-compiled t-fwd-free-core ...): compiling
# InternImage-T takes minutes (7 for the forward on a loaded 2-core machine); the free-core rows are the bound.
COMPILED_ROWS = [
    Row("t-fwd-ours-compiled", lambda: build_forward("ours", compile_model=True), group="fwd"),
    Row("t-step-ours-compiled", lambda: build_step("ours", compile_model=True), group="step"),
    Row("t-fwd-free-core", lambda: build_forward("free"), group="fwd"),
    Row("t-step-free-core", lambda: build_step("free"), group="step"),
]

if __name__ == "__main__":
    rows = ROWS + [row for row in COMPILED_ROWS if "--row" in sys.argv or row.name in sys.argv]
    main(rows, "InternImage: DCNv3 core and InternImage-T (batch 8, 224 px) vs the original algorithm")
