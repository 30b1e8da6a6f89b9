"""run_quickstart.py: its documented forms (flags, or one JSON recipe) reach run_itpn.py, and its end summary
reads the output folder as run_itpn.py's parser does (no training here: run_itpn's main is replaced)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.scripts.conftest import load_script


@pytest.fixture()
def quickstart(monkeypatch):
    script = load_script("run_quickstart")
    calls = []

    def fake_run_path(path, run_name=None):
        namespace = load_script("run_itpn")

        def fake_main(flags):  # stands in for training: writes the files the summary looks for
            calls.append(flags)
            output_dir = Path(namespace["parse_args_or_json"](
                (namespace["ModelArguments"], namespace["DataArguments"], namespace["PretrainingArguments"],
                 namespace["ITPNArguments"]), flags,
            )[2].output_dir)  # fmt: skip
            output_dir.mkdir(parents=True, exist_ok=True)
            for name in ("model.safetensors", "config.json", "loss_curve.png", "reconstruction.png", "README.md"):
                (output_dir / name).write_text("x")
            return {"train_loss": 0.5}

        namespace["main"] = fake_main
        return namespace

    monkeypatch.setitem(script["main"].__globals__, "runpy", SimpleNamespace(run_path=fake_run_path))
    return script, calls


@pytest.mark.parametrize("form", ["--output_dir={}", "--output-dir {}", "--output_dir {}"])
def test_summary_finds_the_output_dir_in_any_flag_spelling(quickstart, tmp_path, capsys, form):
    script, _ = quickstart
    target = tmp_path / "qs"
    script["main"](form.format(target).split(" ") + ["--max_steps", "1"])
    out = capsys.readouterr().out
    assert "(missing!)" not in out
    assert "model.safetensors" in out and str(target.resolve() / "model.safetensors") in out
    assert "outputs/itpn-quickstart" not in out


def test_a_single_json_recipe_overrides_the_quickstart_recipe(quickstart, tmp_path, capsys):
    script, calls = quickstart
    recipe = tmp_path / "mine.json"
    recipe.write_text(json.dumps({"max_steps": 3, "output_dir": str(tmp_path / "from_json"), "do_eval": False}))
    script["main"]([str(recipe)])
    flags = calls[-1]
    assert flags[flags.index("--max_steps") + 1] == "3" and flags[flags.index("--do_eval") + 1] == "False"
    assert flags[flags.index("--preset") + 1] == "itpn-base-pixel"  # the rest of the quickstart recipe stays
    assert str((tmp_path / "from_json").resolve() / "config.json") in capsys.readouterr().out


def test_a_missing_json_recipe_is_a_clear_error(quickstart, tmp_path):
    script, _ = quickstart
    with pytest.raises(SystemExit, match="not found"):
        script["main"]([str(tmp_path / "nope.json")])
