"""Parity with the original AMDIM (amdim-public @ 8754ae14): converted fixture weights reproduce the original r1/r5/r7
maps of both views and the four loss terms with the captured 5x5 source locations. Every `amdim_*` fixture in
../shared/parity/amdim is picked up (other sizes and seeds exist)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from hf_unified_pretrain.models.amdim import AMDIMForPreTraining, AMDIMModel
from hf_unified_pretrain.models.amdim.convert_amdim_original_to_hf import config_from_original, convert_state_dict
from tests.conftest import SHARED_ROOT, shared_path

TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}
LOSS_NAMES = ("g2l_1t5", "g2l_1t7", "g2l_5t5", "lgt_reg")


def fixture_names() -> list[str]:
    folder = SHARED_ROOT / "parity" / "amdim"
    names = sorted(p.stem for p in folder.glob("amdim_*.json")) if folder.is_dir() else []
    return names or ["amdim_enc128_tiny", "amdim_enc32_tiny"]


def load_fixture(name: str):
    tensors = load_file(shared_path("parity", "amdim", f"{name}.safetensors"))
    meta = json.loads(shared_path("parity", "amdim", f"{name}.json").read_text())
    state_dict = {k.removeprefix("state_dict."): v for k, v in tensors.items() if k.startswith("state_dict.")}
    hyperparams = {k: v for k, v in meta.items() if k.startswith(("hyperparams.", "config."))}
    hyperparams = {k.split(".", 1)[1]: v for k, v in hyperparams.items()}
    return tensors, state_dict, hyperparams


@pytest.mark.shared_data
@pytest.mark.parametrize("name", fixture_names())
def test_converted_weights_reproduce_the_original_features_and_losses(name):
    tensors, state_dict, hyperparams = load_fixture(name)
    config = config_from_original(hyperparams)
    model = AMDIMForPreTraining(config)
    model.load_state_dict(convert_state_dict(state_dict, config), strict=True)
    model.train()  # as the fixture: batch norms use the batch statistics of each view
    locations = torch.stack([tensors["r5_source_location_idx.0"], tensors["r5_source_location_idx.1"]], dim=1)
    with torch.no_grad():
        outputs = model(tensors["x1"], tensors["x2"], source_locations=locations)
    for view, ours in (("x1", outputs.features_1), ("x2", outputs.features_2)):
        for index, feature in enumerate(ours):
            torch.testing.assert_close(feature, tensors[f"r1_r5_r7_{view}.{index}"], **TOLERANCE)
    for loss_name in LOSS_NAMES:
        torch.testing.assert_close(outputs.losses[loss_name], tensors[f"losses.{loss_name}"], **TOLERANCE)
    torch.testing.assert_close(outputs.source_locations, locations)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", fixture_names())
def test_bare_model_kind_gives_the_same_maps(name):
    tensors, state_dict, hyperparams = load_fixture(name)
    config = config_from_original(hyperparams, kind="model")
    model = AMDIMModel(config)
    model.load_state_dict(convert_state_dict(state_dict, config, kind="model"), strict=True)
    model.train()
    with torch.no_grad():
        outputs = model(tensors["x2"])
    torch.testing.assert_close(outputs.last_hidden_state, tensors["r1_r5_r7_x2.0"], **TOLERANCE)
    torch.testing.assert_close(outputs.local_features_5, tensors["r1_r5_r7_x2.1"], **TOLERANCE)
    torch.testing.assert_close(outputs.local_features_7, tensors["r1_r5_r7_x2.2"], **TOLERANCE)
