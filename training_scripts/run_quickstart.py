#!/usr/bin/env python
"""The main job: a short iTPN pixel pre-training of a tiny model on the embedded real photographs.

It needs no download and no GPU (`--max_steps 50` gives a first picture sooner). It runs `run_itpn.py` with
`configs/itpn_quickstart.json` and prints where the safetensors checkpoint, the loss curve and the reconstruction
figure are. Extra flags override the recipe (`run_quickstart.py --max_steps 50 --output_dir runs/qs`), and so do the
keys of a single JSON file given instead of flags (`run_quickstart.py my_recipe.json`, e.g. {"max_steps": 50}).
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


def quickstart_flags(extra: list[str]) -> list[str]:
    """run_itpn.py's flags: the recipe's, then `extra` (later flags win); a single `.json` argument instead of flags
    is read as a recipe whose keys override the quickstart's."""
    recipe = json.loads(RECIPE.read_text())
    if len(extra) == 1 and extra[0].endswith(".json"):
        path = Path(extra[0])
        if not path.is_file():
            raise SystemExit(f"run_quickstart.py: recipe {str(path)!r} not found.")
        overrides = json.loads(path.read_text())
        if not isinstance(overrides, dict):
            raise SystemExit(
                f'run_quickstart.py: {path} must hold a JSON object of run_itpn.py flags, e.g. {{"max_steps": 50}}.'
            )
        return recipe_to_flags({**recipe, **overrides})
    return recipe_to_flags(recipe) + extra


def parsed_output_dir(script: dict, flags: list[str]) -> Path:
    """The output folder run_itpn.py writes to, as its own parser reads `flags` (any spelling: `--output_dir X`,
    `--output_dir=X`, `--output-dir X`)."""
    parse = script["parse_args_or_json"]
    types = (
        script["ModelArguments"],
        script["DataArguments"],
        script["PretrainingArguments"],
        script["ITPNArguments"],
    )
    training_args = parse(types, flags)[2]
    return Path(training_args.output_dir).resolve()


def main(extra: list[str]) -> None:
    if {"-h", "--help"} & set(extra):
        print(__doc__.strip() + f"\n\nRecipe: {RECIPE}\nEvery flag of run_itpn.py (below) overrides it.\n")
    script = runpy.run_path(str(HERE / "run_itpn.py"), run_name="run_itpn")
    flags = quickstart_flags(extra)
    start = time.perf_counter()
    metrics = script["main"](flags)
    output_dir = parsed_output_dir(script, flags)
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
