"""M3I pre-training step speed/memory at tiny size and at InternImage-T 224 px (batch 8), the cost of each term, and
ratios against ViTMAE-base SDPA measured in the same run (the anchor of ../shared/notes/cpu-anchors.md).

A step = the whole M3I step of `run_m3i.py`: mixed input (a quarter of the cells from a partner image), forward with
every term switched on, backward, AdamW (betas 0.9/0.999, weight decay 0.05) and the EMA teacher update. The frozen
text encoder has the shape of all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide; random weights: the cost is the same) at
224 px and a 1-layer BERT at tiny size; captions are 32 tokens.

Rows (one group: every ratio is against `vitmae-base-sdpa`, transformers' ViTMAEForPreTraining, vit-mae-base, mask
0.75, same step without the EMA update):
  {size}-all          all four terms (intra-view, inter-view, classification, image-text);
  {size}-no-text      image-text off: the difference to -all is the text encoder + the contrastive term;
  {size}-no-inter     inter-view off: one EMA teacher forward (view 2) and two predictor passes (both mixed images);
  {size}-no-intra     intra-view off: one EMA teacher forward (clean view 1) and one predictor pass;
  {size}-no-dense     both dense terms off: no EMA teacher, no predictor, no input masking;
  {size}-backbone     classification only: the backbone's forward/backward + a linear head.
Sizes: `tiny` (the `tiny` preset: InternImage 16 channels at 64 px) and `t224` (InternImage-T backbone at 224 px,
M3IConfig's default predictor: 512 wide, 4 blocks).

After the table, `--sections` timing of the `-all` step of each size measured: forward time of the student encoder
(backbone + projector), the EMA teacher, the predictor and the text encoder (hooks around their forwards), then the
backward, the optimizer and the EMA update, in ms/step (median).

    python benchmarks/bench_m3i.py                        # every row, 3 interleaved rounds, then the sections
    python benchmarks/bench_m3i.py --rounds 1 --warmup 1 --steps 2
    python benchmarks/bench_m3i.py --rows vitmae-base-sdpa t224-all t224-no-dense --rounds 3 --no_sections
    python benchmarks/bench_m3i.py --sections t224 --warmup 1 --steps 3   # only the section timing of one size
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from harness import Row, main

BATCH = 8
CAPTION_TOKENS = 32
OFF = {
    "no-text": {"image_text_loss_weight": 0.0},
    "no-inter": {"inter_view_loss_weight": 0.0},
    "no-intra": {"intra_view_loss_weight": 0.0},
    "no-dense": {"intra_view_loss_weight": 0.0, "inter_view_loss_weight": 0.0},
    "backbone": {"intra_view_loss_weight": 0.0, "inter_view_loss_weight": 0.0, "image_text_loss_weight": 0.0},
}
# the text encoders: all-MiniLM-L6-v2's shape at 224 px, a 1-layer BERT for the tiny preset
TEXT = {
    "tiny": dict(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
    "t224": dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                 intermediate_size=1536),
}  # fmt: skip


def m3i_config(size: str, **overrides):
    from hf_unified_pretrain.models.internimage.configuration_internimage import INTERNIMAGE_PRESETS
    from hf_unified_pretrain.models.m3i import M3IConfig

    text_width = TEXT[size]["hidden_size"]
    if size == "tiny":
        return M3IConfig.from_preset("tiny", text_hidden_size=text_width, **overrides)
    backbone = {"model_type": "internimage", **INTERNIMAGE_PRESETS["internimage-t"], "image_size": 224}
    return M3IConfig(
        backbone_config=backbone, image_size=224, text_hidden_size=text_width, num_labels=1000, **overrides
    )


def _inputs(config, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One mixed batch as run_m3i.py's collator builds it (a quarter of the cells from the partner image)."""
    from hf_unified_pretrain.data.mixing import mix_images, partner_indices
    from hf_unified_pretrain.masking import block_mix_sources

    size, stride, grid = config.image_size, config.feature_stride, config.grid_size
    views, views_2 = (torch.randn(BATCH, 3, size, size, generator=generator) for _ in range(2))
    partner = partner_indices(BATCH)
    cells = grid[0] * grid[1]
    source_index = block_mix_sources(BATCH, grid, cells // 4, generator=generator)
    geometry = torch.tensor([0.1, -0.1, 0.9, 1.1, 0.0, 0.0]).repeat(BATCH, 1)
    return {
        "pixel_values": mix_images([views, views[partner]], source_index, stride),
        "target_pixel_values": views,
        "pixel_values_2": views_2,
        "relative_geometry": geometry,
        "labels": torch.randint(0, config.num_labels, (BATCH,), generator=generator),
        "input_ids": torch.randint(1, 1000, (BATCH, CAPTION_TOKENS), generator=generator),
        "attention_mask": torch.ones(BATCH, CAPTION_TOKENS, dtype=torch.long),
        "source_index": source_index,
        "mix_partner": partner,
    }


def build_m3i_step(size: str, off: str | None = None):
    """(model, step function, timings) of an M3I pre-training step; `timings` collects per-phase seconds."""
    from transformers import BertConfig, BertModel

    from hf_unified_pretrain.models.m3i import M3IForPreTraining
    from hf_unified_pretrain.teachers import FrozenTextTeacher

    torch.manual_seed(0)
    config = m3i_config(size, **(OFF[off] if off else {}))
    model = M3IForPreTraining(config).train()
    weights = config.loss_weights
    ema = model.build_ema_teacher() if weights["intra_view"] > 0 or weights["inter_view"] > 0 else None
    if weights["image_text"] > 0:
        model.set_teacher(FrozenTextTeacher(BertModel(BertConfig(**TEXT[size]))), name="text")
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.05, betas=(0.9, 0.999)
    )
    generator = torch.Generator().manual_seed(0)
    inputs = _inputs(config, generator)
    if ema is not None:
        inputs["bool_masked_pos"] = model.mask_generator()(BATCH, generator=generator)
    timings: dict[str, list[float]] = {}

    def timed(name, function, *args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        timings.setdefault(name, []).append(time.perf_counter() - start)
        return result

    def step():
        output = timed("forward (all)", model, **inputs)
        timed("backward", output.loss.backward)
        timed("optimizer", optimizer.step)
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            timed("EMA update", ema.update, model.m3i, 0.996)

    return model, step, timings


def build_vitmae():
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    config = ViTMAEConfig(image_size=224, patch_size=16, mask_ratio=0.75, norm_pix_loss=True)
    model = ViTMAEForPreTraining._from_config(config, attn_implementation="sdpa").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05, betas=(0.9, 0.999))
    inputs = {"pixel_values": torch.randn(BATCH, 3, 224, 224)}

    def step():
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, BATCH


def _row(size: str, off: str | None):
    _, step, _ = build_m3i_step(size, off)
    return step, BATCH


ROWS = [Row("vitmae-base-sdpa", build_vitmae, group="step")]
for _size in TEXT:
    ROWS.append(Row(f"{_size}-all", lambda s=_size: _row(s, None), group="step"))
    ROWS += [Row(f"{_size}-{_off}", lambda s=_size, o=_off: _row(s, o), group="step") for _off in OFF]


def sections(size: str, warmup: int, steps: int) -> str:
    """Times the phases of the all-terms step of `size` (forward hooks around the four components)."""
    torch.set_num_threads(2)
    model, step, timings = build_m3i_step(size)

    def wrap(module: torch.nn.Module, name: str) -> None:
        forward = module.forward

        def timed_forward(*args, **kwargs):
            start = time.perf_counter()
            result = forward(*args, **kwargs)
            timings.setdefault(name, []).append(time.perf_counter() - start)
            return result

        module.forward = timed_forward

    wrap(model.m3i, "student encoder forward (backbone + projector)")
    wrap(model.get_teacher("ema"), "EMA teacher forwards (view 1 + view 2)")
    wrap(model.predictor, "predictor forwards (intra + inter, both sources)")
    wrap(model.get_teacher("text"), "text encoder forward (frozen)")
    for _ in range(warmup):
        step()
    timings.clear()
    totals = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        totals.append(time.perf_counter() - start)
    # several calls of a component in one step are summed per step
    per_step = {name: statistics.median(_per_step(values, steps)) for name, values in timings.items()}
    total = statistics.median(totals)
    component = [name for name in per_step if "forward" in name and name != "forward (all)"]
    per_step["forward: heads, losses, masking, mixing (rest)"] = per_step["forward (all)"] - sum(
        per_step[name] for name in component
    )
    order = [*component, "forward: heads, losses, masking, mixing (rest)", "forward (all)", "backward", "optimizer"]
    order.append("EMA update")
    lines = [f"\nSections of {size}-all (batch {BATCH}, median of {steps} steps, step {1000 * total:.0f} ms):\n"]
    lines += ["| phase | ms/step | share of step |", "|---|---|---|"]
    lines += [f"| {name} | {1000 * per_step[name]:.1f} | {per_step[name] / total:.1%} |" for name in order]
    return "\n".join(lines)


def _per_step(values: list[float], steps: int) -> list[float]:
    calls = len(values) // steps
    return [sum(values[i * calls : (i + 1) * calls]) for i in range(steps)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--sections", choices=sorted(TEXT))
    parser.add_argument("--no_sections", action="store_true")
    own, rest = parser.parse_known_args()
    if own.sections:
        timing = argparse.ArgumentParser()
        timing.add_argument("--warmup", type=int, default=3)
        timing.add_argument("--steps", type=int, default=5)
        counts = timing.parse_args(rest)
        print(sections(own.sections, counts.warmup, counts.steps))
        sys.exit(0)
    main(ROWS, "M3I pre-training step (batch 8; ratios vs ViTMAE-base sdpa in the same run)", argv=rest)
    if "--row" not in rest and not own.no_sections:
        counts = argparse.ArgumentParser()
        counts.add_argument("--rows", nargs="*")
        counts.add_argument("--warmup", default="3")
        counts.add_argument("--steps", default="5")
        chosen, _ = counts.parse_known_args(rest)
        sizes = [s for s in TEXT if not chosen.rows or any(r.startswith(f"{s}-") for r in chosen.rows)]
        for size in sizes:
            command = [
                sys.executable,
                __file__,
                "--sections",
                size,
                "--warmup",
                chosen.warmup,
                "--steps",
                chosen.steps,
            ]
            print(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
