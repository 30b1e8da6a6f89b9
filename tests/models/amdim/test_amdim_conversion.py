"""AMDIM converter: the command line on an original-format checkpoint, original key layouts of other sizes loaded
strictly, and errors that list the offending keys."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoModelForImageClassification, AutoModelForPreTraining

import hf_unified_pretrain  # noqa: F401
from hf_unified_pretrain.conversion import ConversionError
from hf_unified_pretrain.models.amdim import AMDIMForPreTraining
from hf_unified_pretrain.models.amdim.convert_amdim_original_to_hf import (
    config_from_original,
    convert_state_dict,
    main,
)

from .test_amdim_parity import TOLERANCE, load_fixture

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def original_layout(hyperparams: dict) -> dict[str, tuple[int, ...]]:
    """Key → shape of the original `Model.state_dict()`, written from the original module structure (model.py)."""
    ndf, rkhs, depth, size = (
        hyperparams["ndf"],
        hyperparams["n_rkhs"],
        hyperparams["n_depth"],
        hyperparams["encoder_size"],
    )
    n_classes = hyperparams["n_classes"]
    keys: dict[str, tuple[int, ...]] = {}

    def bn(prefix, channels):
        for name in _BN:
            keys[f"{prefix}.{name}"] = () if name == "num_batches_tracked" else (channels,)

    def conv3x3(index, n_in, n_out, kernel):
        keys[f"encoder.module.layer_list.{index}.conv.weight"] = (n_out, n_in, kernel, kernel)
        keys[f"encoder.module.layer_list.{index}.conv.bias"] = (n_out,)

    def res_nxn(prefix, n_in, n_out, kernel):
        keys[f"{prefix}.conv1.weight"] = (n_out, n_in, kernel, kernel)
        keys[f"{prefix}.conv2.weight"] = (n_out, n_out, 1, 1)
        bn(f"{prefix}.bn1.bn", n_out)

    def block(index, n_in, n_out, kernel):
        res_nxn(f"encoder.module.layer_list.{index}.layer_list.0", n_in, n_out, kernel)
        for unit in range(1, depth):
            res_nxn(f"encoder.module.layer_list.{index}.layer_list.{unit}", n_out, n_out, 1)

    if size == 32:
        conv3x3(0, 3, ndf, 3)
        res_nxn("encoder.module.layer_list.1", ndf, ndf, 1)
        layers = [(2, ndf, 2 * ndf, 4), (3, 2 * ndf, 4 * ndf, 2), (5, 4 * ndf, 4 * ndf, 3), (6, 4 * ndf, 4 * ndf, 3)]
        top = 4 * ndf
    else:
        conv3x3(0, 3, ndf, 3 if size == 64 else 5)
        offset = 0 if size == 64 else 1
        if size == 128:
            conv3x3(1, ndf, ndf, 3)
        layers = [
            (1 + offset, ndf, 2 * ndf, 4),
            (2 + offset, 2 * ndf, 4 * ndf, 4),
            (3 + offset, 4 * ndf, 8 * ndf, 2),
            (5 + offset, 8 * ndf, 8 * ndf, 3),
            (6 + offset, 8 * ndf, 8 * ndf, 3),
        ]
        top = 8 * ndf
    for index, n_in, n_out, kernel in layers:
        block(index, n_in, n_out, kernel)
    norm_index = layers[-3][0] + 1 if size != 32 else 4
    bn(f"encoder.module.layer_list.{norm_index}.bn", top)
    last = layers[-1][0] + 1
    res_nxn(f"encoder.module.layer_list.{last}", top, rkhs, 3)
    bn(f"encoder.module.layer_list.{last + 1}.bn", rkhs)
    for scale in (5, 7):
        prefix = f"encoder.module.rkhs_block_{scale}"
        keys[f"{prefix}.conv1.weight"] = (rkhs, top, 1, 1)
        keys[f"{prefix}.conv2.weight"] = (rkhs, rkhs, 1, 1)
        keys[f"{prefix}.shortcut.weight"] = (rkhs, top, 1, 1)
        keys[f"{prefix}.shortcut.bias"] = (rkhs,)
        bn(f"{prefix}.bn_hid.bn", rkhs)
        bn(f"{prefix}.bn_out.bn", rkhs)
    keys["g2l_loss.masks_r5"] = (25, 1, 5, 5)
    keys["evaluator.block_glb_mlp.block_forward.2.weight"] = (1024, rkhs)
    bn("evaluator.block_glb_mlp.block_forward.3", 1024)
    keys["evaluator.block_glb_mlp.block_forward.6.weight"] = (n_classes, 1024)
    keys["evaluator.block_glb_mlp.block_forward.6.bias"] = (n_classes,)
    keys["evaluator.block_glb_lin.block_forward.2.weight"] = (n_classes, rkhs)
    keys["evaluator.block_glb_lin.block_forward.2.bias"] = (n_classes,)
    return keys


def random_original_state_dict(hyperparams: dict) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in original_layout(hyperparams).items():
        if key == "g2l_loss.masks_r5":
            state[key] = torch.eye(25, dtype=torch.uint8).view(25, 1, 5, 5)
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(3)
        else:
            state[key] = torch.randn(shape, generator=generator)
    return state


LAYOUTS = [
    dict(encoder_size=32, ndf=8, n_rkhs=32, n_depth=1, use_bn=False, n_classes=10, tclip=20.0),
    dict(encoder_size=64, ndf=4, n_rkhs=40, n_depth=3, use_bn=True, n_classes=7, tclip=10.0),
    dict(encoder_size=128, ndf=4, n_rkhs=32, n_depth=2, use_bn=False, n_classes=5, tclip=20.0),
    dict(encoder_size=128, ndf=4, n_rkhs=48, n_depth=1, use_bn=True, n_classes=3, tclip=20.0),
]


@pytest.mark.parametrize(
    "hyperparams", LAYOUTS, ids=lambda h: f"{h['encoder_size']}px-d{h['n_depth']}-bn{h['use_bn']}"
)
def test_original_layouts_of_other_sizes_load_strictly(hyperparams):
    config = config_from_original(hyperparams)
    assert (config.image_size, config.ndf, config.n_rkhs, config.n_depth) == (
        hyperparams["encoder_size"], hyperparams["ndf"], hyperparams["n_rkhs"], hyperparams["n_depth"]
    )  # fmt: skip
    assert config.use_bn == hyperparams["use_bn"] and config.tclip == hyperparams["tclip"]
    assert config.num_labels == hyperparams["n_classes"]
    original = random_original_state_dict(hyperparams)
    converted = convert_state_dict(original, config)
    model = AMDIMForPreTraining(config)
    model.load_state_dict(converted, strict=True)
    # every tensor is an original tensor, unchanged
    originals = {id(tensor) for tensor in original.values()}
    assert all(id(tensor) in originals for tensor in converted.values())
    # only the constant masks and the batch norms the original builds but never applies (use_bn=False) are left out
    kept = {id(tensor) for tensor in converted.values()}
    dropped = {key for key, tensor in original.items() if id(tensor) not in kept}
    if hyperparams["use_bn"]:
        assert dropped == {"g2l_loss.masks_r5"}
    else:
        assert "g2l_loss.masks_r5" in dropped
        unit_norms = {key for key in original if ".bn1.bn." in key or ".bn_hid.bn." in key}
        assert unit_norms <= dropped
        trunk_norms = dropped - unit_norms - {"g2l_loss.masks_r5"}
        # the one optional norm inside the trunk (after the 7x7 block); the final norm is always applied and kept
        assert len({key.rsplit(".", 1)[0] for key in trunk_norms}) == 1
        assert len(dropped) == 1 + len(_BN) * (1 + sum(".bn1.bn.weight" in key for key in original) + 2)


def test_unknown_keys_and_wrong_masks_are_listed():
    hyperparams = LAYOUTS[0]
    config = config_from_original(hyperparams)
    original = random_original_state_dict(hyperparams)
    original["encoder.module.layer_list.9.conv.weight"] = torch.zeros(1)
    original["encoder.module.layer_list.2.layer_list.1.conv1.weight"] = torch.zeros(1)  # n_depth is 1
    with pytest.raises(ConversionError) as error:
        convert_state_dict(original, config)
    assert error.value.unknown == sorted(
        ["encoder.module.layer_list.2.layer_list.1.conv1.weight", "encoder.module.layer_list.9.conv.weight"]
    )
    original = random_original_state_dict(hyperparams)
    original["g2l_loss.masks_r5"] = torch.ones(25, 1, 5, 5, dtype=torch.uint8)
    with pytest.raises(ConversionError, match="masks_r5"):
        convert_state_dict(original, config)
    with pytest.raises(ValueError, match="lack"):
        config_from_original({"ndf": 8})


@pytest.mark.shared_data
def test_command_line_converts_an_original_checkpoint_with_hyperparams(tmp_path):
    tensors, state_dict, hyperparams = load_fixture("amdim_enc32_tiny")
    checkpoint = tmp_path / "amdim_cpt.pth"
    torch.save({"model": state_dict, "hyperparams": hyperparams, "cursor": {"info_epoch": 3}}, checkpoint)
    main(["--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "pretraining")])
    model = AutoModelForPreTraining.from_pretrained(tmp_path / "pretraining").train()
    assert type(model).__name__ == "AMDIMForPreTraining"
    locations = torch.stack([tensors["r5_source_location_idx.0"], tensors["r5_source_location_idx.1"]], dim=1)
    with torch.no_grad():
        outputs = model(tensors["x1"], tensors["x2"], source_locations=locations)
    torch.testing.assert_close(outputs.losses["g2l_1t7"], tensors["losses.g2l_1t7"], **TOLERANCE)
    assert (tmp_path / "pretraining" / "README.md").is_file()
    processor = (tmp_path / "pretraining" / "preprocessor_config.json").read_text()
    assert "0.491" in processor  # CIFAR-10 mean of the 32-px encoder (125.3 / 255)

    main(["--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "model"), "--kind", "model"])
    encoder = AutoModel.from_pretrained(tmp_path / "model").train()
    with torch.no_grad():
        torch.testing.assert_close(encoder(tensors["x1"]).local_features_7, tensors["r1_r5_r7_x1.2"], **TOLERANCE)
    main(["--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "cls"), "--kind", "classifier"])
    classifier = AutoModelForImageClassification.from_pretrained(tmp_path / "cls")
    torch.testing.assert_close(
        classifier.mlp_classifier.fc.weight, state_dict["evaluator.block_glb_mlp.block_forward.6.weight"]
    )


def test_a_bare_state_dict_gets_told_how_to_supply_the_hyperparameters_and_that_way_works(tmp_path):
    from hf_unified_pretrain.cli import main as cli_main

    hyperparams = LAYOUTS[0]
    state_dict = random_original_state_dict(hyperparams)
    torch.save(state_dict, tmp_path / "bare.pth")
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["convert", "amdim", "--checkpoint", str(tmp_path / "bare.pth"), "--output_dir", str(tmp_path / "x")])
    message = str(exit_info.value.code)
    assert "lack ['ndf', 'n_rkhs', 'encoder_size']" in message and "'hyperparams'" in message
    assert "torch.save({'model': state_dict, 'hyperparams': {" in message
    # the fix the message names converts the same weights
    torch.save({"model": state_dict, "hyperparams": hyperparams}, tmp_path / "amdim.pth")
    cli_main(["convert", "amdim", "--checkpoint", str(tmp_path / "amdim.pth"), "--output_dir", str(tmp_path / "ok")])
    model = AutoModelForPreTraining.from_pretrained(tmp_path / "ok")
    assert (model.config.ndf, model.config.n_rkhs, model.config.image_size) == (8, 32, 32)
