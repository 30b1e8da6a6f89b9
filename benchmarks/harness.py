"""Benchmark harness: every row runs in a fresh subprocess, rows are interleaved over rounds, ratios are printed.

This machine is a shared 2-vCPU guest whose absolute speed drifts (see ../shared/notes/cpu-anchors.md), so a figure is
only meaningful as a ratio against a neighbour measured in the same run. A benchmark script defines rows
(`Row(name, build)` where `build()` returns `(step_fn, images_per_step)`), then calls `main(rows, ...)`:

- without `--row`, it re-invokes itself once per row and round (`--row NAME`), collects the JSON each child prints,
  and prints a table: median img/s over all timed steps, per-round medians, peak RSS, and the ratio to a reference row;
- with `--row NAME`, it builds that row, runs warm-up and timed steps, and prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

StepFunction = Callable[[], None]


@dataclass
class Row:
    """One measured configuration.

    Attributes:
        name: Unique row name (used on the command line).
        build: Returns `(step, images_per_step)`; `step()` runs one full step (e.g. forward + backward + optimizer).
        group: Rows of the same group are compared against the group's first row.
    """

    name: str
    build: Callable[[], tuple[StepFunction, int]]
    group: str = ""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_row(row: Row, warmup: int, steps: int) -> dict:
    """Builds `row` and times `steps` calls after `warmup` calls; returns the per-step seconds and memory."""
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    rss_after_import = _peak_rss_mb()
    build_start = time.perf_counter()
    step, images = row.build()
    build_seconds = time.perf_counter() - build_start
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {
        "name": row.name,
        "images_per_step": images,
        "step_seconds": times,
        "build_seconds": build_seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "peak_rss_delta_mb": _peak_rss_mb() - rss_after_import,
    }


def _run_child(script: str, name: str, warmup: int, steps: int, extra: Sequence[str]) -> dict:
    command = [sys.executable, script, "--row", name, "--warmup", str(warmup), "--steps", str(steps), *extra]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"Row {name} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _format_table(rows: Sequence[Row], results: dict[str, list[dict]]) -> str:
    header = (
        "| row | img/s (median) | per-round medians | ms/step | peak RSS MB (Δ after import) | vs group reference "
        "| build s |"
    )
    lines = [header, "|" + "---|" * 7]
    reference_speed: dict[str, float] = {}
    for row in rows:
        runs = results[row.name]
        images = runs[0]["images_per_step"]
        all_steps = [t for run in runs for t in run["step_seconds"]]
        speed = images / statistics.median(all_steps)
        rounds = "/".join(f"{images / statistics.median(run['step_seconds']):.1f}" for run in runs)
        reference_speed.setdefault(row.group, speed)
        ratio = speed / reference_speed[row.group]
        peak = max(run["peak_rss_mb"] for run in runs)
        delta = max(run["peak_rss_delta_mb"] for run in runs)
        # build time (model construction; for compiled rows also the compile), median over rounds
        build = statistics.median(run["build_seconds"] for run in runs)
        lines.append(
            f"| {row.name} | {speed:.2f} | {rounds} | {1000 * statistics.median(all_steps):.1f} | "
            f"{peak:.0f} (+{delta:.0f}) | {ratio:.2f} | {build:.1f} |"
        )
    return "\n".join(lines)


def main(rows: Sequence[Row], description: str, argv: Sequence[str] | None = None) -> None:
    """Command line of a benchmark script (see the module docstring)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--row", help="Measure only this row in this process and print JSON (used internally).")
    parser.add_argument("--rows", nargs="*", help="Subset of rows to run (default: all).")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds; order reverses every other round.")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    by_name = {row.name: row for row in rows}
    if args.row:
        print(json.dumps(measure_row(by_name[args.row], args.warmup, args.steps)))
        return
    selected = [by_name[name] for name in args.rows] if args.rows else list(rows)
    results: dict[str, list[dict]] = {row.name: [] for row in selected}
    script = os.path.abspath(sys.argv[0])
    for round_index in range(args.rounds):
        order = selected if round_index % 2 == 0 else list(reversed(selected))
        for row in order:
            results[row.name].append(_run_child(script, row.name, args.warmup, args.steps, []))
            print(f"round {round_index + 1}: {row.name} done", file=sys.stderr, flush=True)
    print(f"\n{description}\n")
    print(_format_table(selected, results))
