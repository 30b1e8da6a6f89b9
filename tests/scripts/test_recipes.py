"""Every shipped JSON recipe builds its model: preset and config overrides name real fields with valid values.

A renamed config field (e.g. MVP's `intermediate_size` -> `mlp_ratio`) must not leave a recipe that only fails when
someone runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_unified_pretrain.models.registry import METHODS
from hf_unified_pretrain.training.script_utils import apply_config_overrides, preset_config

RECIPES = sorted((Path(__file__).resolve().parents[2] / "training_scripts" / "configs").glob("*.json"))


def _method_of(recipe: Path):
    for name in sorted(METHODS, key=len, reverse=True):
        if recipe.stem.startswith(f"{name}_"):
            return METHODS[name]
    raise AssertionError(f"{recipe.name} does not start with a registered method name ({sorted(METHODS)}).")


@pytest.mark.parametrize("recipe", RECIPES, ids=[recipe.stem for recipe in RECIPES])
def test_recipe_builds_a_valid_config(recipe):
    values = json.loads(recipe.read_text())
    config_class = _method_of(recipe).load("config")
    if values.get("preset"):  # as the run scripts build a preset's config
        config = preset_config(config_class, values["preset"], values.get("config_overrides"))
    else:
        config = apply_config_overrides(config_class(), values.get("config_overrides", ""))
    # A full round trip re-runs the config's own validation on what the recipe produced.
    assert config_class.from_dict(config.to_dict()).to_dict() == config.to_dict()


def test_every_method_with_a_run_script_ships_a_recipe():
    scripts = {path.stem.removeprefix("run_") for path in (RECIPES[0].parents[1]).glob("run_*.py")}
    recipe_methods = {_method_of(recipe).name for recipe in RECIPES}
    assert scripts - {"quickstart"} <= recipe_methods
