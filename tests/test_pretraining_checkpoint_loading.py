"""A pre-training checkpoint of every registered method loads into its method's base model, backbone and classifier
with no UNEXPECTED-keys report: the heads a checkpoint carries are declared as expected to be dropped, and the
encoder weights arrive unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.registry_helpers import load_with_report, method_entries

TARGET_ROLES = ("model", "backbone", "classification")
CASES = [
    pytest.param(entry, role, id=f"{entry.name}->{role}")
    for entry in method_entries("pretraining", "test_preset")
    for role in TARGET_ROLES
    if getattr(entry, role) is not None
]


@pytest.fixture(scope="module")
def checkpoint_folders(tmp_path_factory) -> dict[str, Path]:
    folders: dict[str, Path] = {}
    for entry in method_entries("pretraining", "test_preset"):
        torch.manual_seed(0)
        config = entry.load("config").from_preset(entry.test_preset)
        folders[entry.name] = tmp_path_factory.mktemp(entry.name)
        entry.load("pretraining")(config).save_pretrained(folders[entry.name])
    return folders


@pytest.mark.parametrize(("entry", "role"), CASES)
def test_pretraining_checkpoint_loads_without_unexpected_keys(checkpoint_folders, entry, role):
    folder = checkpoint_folders[entry.name]
    model, info, log = load_with_report(entry.load(role), folder)

    assert not info["unexpected_keys"], info["unexpected_keys"]
    assert "UNEXPECTED" not in log
    assert not info["mismatched_keys"]
    # Every loaded weight equals the checkpoint's under the key it was saved as (the base-model prefix aside).
    stored = load_file(str(folder / "model.safetensors"))
    prefix = model.base_model_prefix
    by_suffix = {key.removeprefix(f"{prefix}."): value for key, value in stored.items()}
    loaded = {key.removeprefix(f"{prefix}."): value for key, value in model.state_dict().items()}
    shared = [key for key in loaded if key in by_suffix and key not in info["missing_keys"]]
    assert shared, "no encoder weight was matched to the checkpoint"
    for key in shared:
        torch.testing.assert_close(loaded[key], by_suffix[key], rtol=0, atol=0, msg=key)
