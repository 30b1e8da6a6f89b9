"""A pre-training checkpoint of every registered method loads into its method's base model, backbone and classifier
with no UNEXPECTED-keys report (the heads a checkpoint carries are declared as expected to be dropped) and no MISSING
row but the new classifier's (parts that are legitimately new at fine-tuning time are declared too); the encoder
weights arrive unchanged. A classification checkpoint loads into the base model and backbone the same way."""

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
# The new linear head of a classifier is the one MISSING row a user should see ("train it on your task").
NEW_HEAD = "classifier."


@pytest.fixture(scope="module")
def checkpoint_folders(tmp_path_factory) -> dict[str, Path]:
    folders: dict[str, Path] = {}
    for entry in method_entries("pretraining", "test_preset"):
        torch.manual_seed(0)
        config = entry.load("config").from_preset(entry.test_preset)
        folders[entry.name] = tmp_path_factory.mktemp(entry.name)
        entry.load("pretraining")(config).save_pretrained(folders[entry.name])
    return folders


@pytest.fixture(scope="module")
def classification_folders(tmp_path_factory) -> dict[str, Path]:
    folders: dict[str, Path] = {}
    for entry in method_entries("classification", "test_preset"):
        torch.manual_seed(0)
        config = entry.load("config").from_preset(entry.test_preset)
        folders[entry.name] = tmp_path_factory.mktemp(f"{entry.name}-classification")
        entry.load("classification")(config).save_pretrained(folders[entry.name])
    return folders


@pytest.mark.parametrize(("entry", "role"), CASES)
def test_pretraining_checkpoint_reports_only_the_new_classifier_as_missing(checkpoint_folders, entry, role):
    _, info, log = load_with_report(entry.load(role), checkpoint_folders[entry.name])

    if role == "classification":
        assert all(key.startswith(NEW_HEAD) for key in info["missing_keys"]), info["missing_keys"]
    else:
        assert not info["missing_keys"], info["missing_keys"]
        assert "MISSING" not in log


@pytest.mark.parametrize(
    ("entry", "role"),
    [
        pytest.param(entry, role, id=f"{entry.name}-classification->{role}")
        for entry in method_entries("classification", "test_preset")
        for role in ("model", "backbone")
        if getattr(entry, role) is not None
    ],
)
def test_classification_checkpoint_loads_into_the_base_model_and_backbone(classification_folders, entry, role):
    folder = classification_folders[entry.name]
    model, info, log = load_with_report(entry.load(role), folder)

    assert not info["unexpected_keys"], info["unexpected_keys"]
    assert "UNEXPECTED" not in log
    assert not info["mismatched_keys"]
    # Only parts the classifier does not build may be missing (e.g. iTPN's pyramid); every weight it has arrives.
    stored = load_file(str(folder / "model.safetensors"))
    stored_suffixes = {key.split(".", 1)[1] if "." in key else key for key in stored} | set(stored)
    for key in info["missing_keys"]:
        suffix = key.removeprefix(f"{model.base_model_prefix}.")
        assert suffix not in stored_suffixes and key not in stored, key


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
