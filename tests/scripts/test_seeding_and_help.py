"""`--seed` fixes everything a run starts from (initial weights, first batch, masks, first loss); `--help` opens
with what the script does and names its presets; the optimiser is the fused AdamW and no pinned memory is asked
for without an accelerator."""

from __future__ import annotations

import pytest
import torch

import hf_unified_pretrain  # noqa: F401
from hf_unified_pretrain.models.amdim import AMDIM_PRESETS
from hf_unified_pretrain.models.itpn import ITPN_PRESETS
from hf_unified_pretrain.models.mvp import MVP_PRESETS
from tests.scripts.conftest import load_script

COMMON = ["--do_train", "--per_device_train_batch_size", "4", "--embedded_num_images", "16", "--report_to", "none"]


def _script_args(script, output_dir, seed, teacher=None):
    if script == "run_itpn":
        return ["--preset", "itpn-tiny-test", "--output_dir", str(output_dir), "--seed", str(seed), *COMMON]
    return ["--preset", "tiny", "--teacher_name_or_path", str(teacher), "--output_dir", str(output_dir),
            "--seed", str(seed), *COMMON]  # fmt: skip


def _start_of_run(script, output_dir, seed, teacher=None):
    """Initial weights, first training batch and first loss, from the script's own set-up."""
    trainer = load_script(script)["setup"](_script_args(script, output_dir, seed, teacher)).trainer
    weights = {name: value.detach().clone() for name, value in trainer.model.state_dict().items()}
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    return weights, batch, loss, trainer


@pytest.mark.parametrize("script", ["run_itpn", "run_mvp"])
def test_the_seed_fixes_initial_weights_and_first_loss(script, tmp_path, tiny_clip_teacher):
    first_weights, first_batch, first_loss, trainer = _start_of_run(script, tmp_path / "a", 3, tiny_clip_teacher)
    again_weights, again_batch, again_loss, _ = _start_of_run(script, tmp_path / "b", 3, tiny_clip_teacher)
    other_weights, _, other_loss, _ = _start_of_run(script, tmp_path / "c", 4, tiny_clip_teacher)

    assert first_weights.keys() == again_weights.keys()
    for name, value in first_weights.items():
        torch.testing.assert_close(again_weights[name], value, rtol=0, atol=0, msg=name)
    for key, value in first_batch.items():
        assert torch.equal(again_batch[key], value), key
    assert first_batch["bool_masked_pos"].any()
    assert first_loss.item() == again_loss.item() and torch.isfinite(first_loss)

    changed = [name for name, value in first_weights.items() if not torch.equal(other_weights[name], value)]
    # randomly initialised matrices differ (biases, norms and sin-cos tables are deterministic by design)
    assert len(changed) >= 10 and any(name.endswith("patch_embeddings.projection.weight") for name in changed)
    assert other_loss.item() != first_loss.item()

    # the optimiser the run will use: the fused AdamW (supported on this device), and no pinned memory on CPU
    assert trainer.args.optim == "adamw_torch_fused"
    assert trainer.create_optimizer().defaults["fused"] is True
    assert trainer.args.dataloader_pin_memory is (torch.accelerator.is_available() and not trainer.args.use_cpu)


@pytest.mark.parametrize(
    "script,presets,method",
    [("run_itpn", ITPN_PRESETS, "iTPN"), ("run_mvp", MVP_PRESETS, "MVP"), ("run_amdim", AMDIM_PRESETS, "AMDIM")],
)
def test_help_opens_with_what_the_script_does_and_names_its_presets(script, presets, method, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script(script)["main"](["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    usage, description = text.split("\n\n", 2)[:2]
    assert usage.startswith("usage: ") and len(usage.splitlines()) == 1
    assert description.startswith(f"Pre-train {method}:")
    preset_line = next(line for line in text.splitlines() if line.startswith("Presets (--preset NAME):"))
    assert all(name in preset_line for name in presets)
    assert "tiny" in preset_line
    assert text.index("Presets (--preset NAME)") < text.index("options:")


def test_fused_adamw_falls_back_where_the_device_has_no_kernel(monkeypatch, tmp_path):
    from hf_unified_pretrain.training import PretrainingArguments, arguments

    monkeypatch.setattr(arguments, "fused_adamw_available", lambda device_type: False)
    args = PretrainingArguments(output_dir=str(tmp_path), report_to="none")
    assert args.optim == "adamw_torch"
    monkeypatch.undo()
    assert PretrainingArguments(output_dir=str(tmp_path), report_to="none").optim == "adamw_torch_fused"
    assert arguments.fused_adamw_available("cpu") is True  # this torch has the CPU kernel


def test_quickstart_help_opens_with_the_main_job_then_the_flags_of_run_itpn(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script("run_quickstart")["main"](["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("The main job: a short iTPN pixel pre-training")
    assert "itpn_quickstart.json" in text and text.index("Presets (--preset NAME)") > text.index("Recipe:")
