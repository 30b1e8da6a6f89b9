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
    python benchmarks/bench_multimae.py --op-split base-mae-sdpa base-multimae-sdpa-v98  # where a step's time goes
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


_GEMMS = ("mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward")


def print_op_split(names: list[str], steps: int = 3) -> None:
    """Where a training step's time goes, per row: GEMMs (matrix multiplies and convolutions, with their GFLOP/s),
    attention kernels, every other aten op (elementwise, norms, copies, the optimizer's updates) and the time outside
    aten ops (Python and dispatch); as CPU seconds at 1 thread (process time: other load on the machine moves it far
    less than wall time) and as wall seconds at 2 threads (meaningful on a quiet machine only). The ops losing most
    to imperfect 2-thread scaling (2-thread wall minus half their 1-thread CPU) are listed. Every op is timed on its
    own, which adds a little dispatch; medians over `steps` steps after a warm-up step."""
    import statistics
    import time
    from collections import defaultdict

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    class _OpClock(TorchDispatchMode):
        def __init__(self, clock) -> None:
            super().__init__()
            self.clock = clock
            self.seconds = defaultdict(float)

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            start = self.clock()
            out = func(*args, **(kwargs or {}))
            self.seconds[func.__name__.split(".")[0]] += self.clock() - start
            return out

    def kind(op: str) -> str:
        return "gemm" if op in _GEMMS else "attention" if "attention" in op else "other ops"

    by_name = {row.name: row for row in ROWS}
    for name in names or [row.name for row in ROWS]:
        step, _ = by_name[name].build()
        with FlopCounterMode(display=False) as counter:
            step()
        per_op = {}
        for threads, clock in ((1, time.process_time), (2, time.perf_counter)):
            torch.set_num_threads(threads)
            step()
            runs = []
            for _ in range(steps):
                with _OpClock(clock) as op_clock:
                    start = clock()
                    step()
                    total = clock() - start
                runs.append({**op_clock.seconds, "outside ops": total - sum(op_clock.seconds.values())})
            per_op[threads] = {op: statistics.median(run.get(op, 0.0) for run in runs) for op in runs[0]}
        for threads, unit in ((1, "CPU s at 1 thread"), (2, "wall s at 2 threads")):
            split = defaultdict(float)
            for op, seconds in per_op[threads].items():
                split[op if op == "outside ops" else kind(op)] += seconds
            parts = ", ".join(f"{key} {split[key]:.2f}" for key in ("gemm", "attention", "other ops", "outside ops"))
            rate = counter.get_total_flops() / split["gemm"] / 1e9
            print(f"{name}: {sum(split.values()):.2f} {unit} = {parts} (GEMMs at {rate:.0f} GFLOP/s)", flush=True)
        excess = {op: per_op[2].get(op, 0.0) - per_op[1][op] / 2 for op in per_op[1]}
        worst = sorted(excess.items(), key=lambda item: -item[1])[:6]
        print(
            f"  ops losing most at 2 threads (s): {', '.join(f'{op} {seconds:+.2f}' for op, seconds in worst)}",
            flush=True,
        )


if __name__ == "__main__":
    if "--op-split" in sys.argv:  # python benchmarks/bench_multimae.py --op-split [ROW ...]
        print_op_split(sys.argv[sys.argv.index("--op-split") + 1 :])
    elif "--flops" in sys.argv:  # python benchmarks/bench_multimae.py --flops [ROW ...]
        print_flops(sys.argv[sys.argv.index("--flops") + 1 :])
    else:
        main(ROWS, "MultiMAE pre-training step (batch 8; ratios vs ViTMAE sdpa of the same size)")
