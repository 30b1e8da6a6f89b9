#!/usr/bin/env python
"""The main job: a short iTPN pixel pre-training of a tiny model on the embedded real photographs.

It needs no download and no GPU (a few minutes on 2 CPU cores). It runs `run_itpn.py` with
`configs/itpn_quickstart.json` (extra flags override the recipe, e.g. `--max_steps 50`) and prints where the
safetensors checkpoint, the loss curve and the reconstruction figure are.
"""

from __future__ import annotations

import json
import runpy
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPE = HERE / "configs" / "itpn_quickstart.json"


def recipe_to_flags(recipe: dict) -> list[str]:
    """A JSON recipe as command-line flags, so that extra flags given here can override it."""
    flags = []
    for key, value in recipe.items():
        if isinstance(value, bool):
            flags += [f"--{key}", str(value)]
        elif isinstance(value, list):
            flags += [f"--{key}", *map(str, value)]
        else:
            flags += [f"--{key}", str(value)]
    return flags


def main(extra: list[str]) -> None:
    if {"-h", "--help"} & set(extra):
        print(__doc__.strip() + f"\n\nRecipe: {RECIPE}\nEvery flag of run_itpn.py (below) overrides it.\n")
    run_itpn = runpy.run_path(str(HERE / "run_itpn.py"), run_name="run_itpn")["main"]
    recipe = json.loads(RECIPE.read_text())
    start = time.perf_counter()
    metrics = run_itpn(recipe_to_flags(recipe) + extra)
    output_dir = Path(recipe["output_dir"])
    for index, flag in enumerate(extra[:-1]):
        if flag == "--output_dir":
            output_dir = Path(extra[index + 1])
    output_dir = output_dir.resolve()
    print("\n" + "=" * 80)
    print(
        f"Quickstart finished in {time.perf_counter() - start:.0f} s "
        f"(train loss {metrics.get('train_loss', float('nan')):.4f}, eval loss {metrics.get('eval_loss', float('nan')):.4f})"
    )
    for label, name in (
        ("checkpoint (safetensors)", "model.safetensors"),
        ("config", "config.json"),
        ("loss curve", "loss_curve.png"),
        ("reconstruction", "reconstruction.png"),
        ("model card", "README.md"),
    ):
        path = output_dir / name
        print(f"  {label:<26} {path}{'' if path.exists() else '  (missing!)'}")
    print(
        "Load it with:  import hf_unified_pretrain; from transformers import AutoModel; "
        f"AutoModel.from_pretrained('{output_dir}')"
    )
    print("=" * 80)


if __name__ == "__main__":
    main(sys.argv[1:])
