"""The package command line: list, convert dispatch, card, reconstruct on a freshly trained tiny checkpoint; the
method choices of every command come from the registry."""

import json
import re

import pytest
import torch
from PIL import Image

from hf_unified_pretrain.cli import main
from hf_unified_pretrain.conversion import ConversionError
from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNForPreTraining, ITPNImageProcessor
from tests.registry_helpers import method_entries, method_params


@pytest.mark.parametrize("entry", method_params())
def test_list_names_every_registered_method_with_its_classes(entry, capsys):
    main(["list"])
    lines = capsys.readouterr().out.splitlines()
    line = next(line for line in lines if line.startswith(f"{entry.name} "))
    assert f"model_type={entry.load('config').model_type!r}" in line
    assert [name.strip() for name in line.split(": ", 1)[1].split(",")] == list(entry.class_names().values())


def test_convert_help_lists_exactly_the_registered_converters(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    section = out[out.index("methods:") :].split("\n\n")[0]
    listed = re.findall(r"^ {4}(\S+)(?: {2,}|$)", section, flags=re.MULTILINE)
    assert listed == [entry.name for entry in method_entries("converter")]


@pytest.mark.parametrize("entry", method_params("converter"))
def test_every_converter_has_the_one_command_shape(entry, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", entry.name, "--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith(f"usage: hf-unified-pretrain convert {entry.name} ")
    options = set(re.findall(r"(--[a-z_]+)", usage))
    assert {"--checkpoint", "--output_dir", "--set", "--no_model_card"} <= options
    with pytest.raises(SystemExit) as exit_info:  # the two paths are required
        main(["convert", entry.name])
    assert exit_info.value.code == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_convert_unknown_method_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "amdim-unknown", "--checkpoint", "x.pth", "--output_dir", "out"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'amdim-unknown'" in err
    assert all(repr(entry.name) in err for entry in method_entries("converter"))


def test_card_offers_only_registered_methods(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["card", str(tmp_path), "--method", "not-a-method"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'not-a-method'" in capsys.readouterr().err


def test_unknown_arguments_of_other_commands_are_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["list", "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.fixture(scope="module")
def pixel_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("itpn_pixel")
    ITPNForPreTraining(ITPNConfig.from_preset("itpn-tiny-test")).save_pretrained(folder)
    ITPNImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_reconstruct_writes_a_figure(pixel_checkpoint, tmp_path, capsys):
    image = tmp_path / "photo.png"
    Image.new("RGB", (48, 40), (200, 30, 30)).save(image)
    main(["reconstruct", str(pixel_checkpoint), str(image), "--output_dir", str(tmp_path / "fig")])
    written = capsys.readouterr().out.strip().splitlines()[-1]
    assert written == str(tmp_path / "fig" / "reconstruction.png")
    with Image.open(written) as figure:  # one row of six panels (norm_pix_loss: raw and de-normalised predictions)
        assert figure.size[0] > 4 * figure.size[1]
        assert len(set(figure.convert("RGB").getdata())) > 50  # drawn, not a blank canvas


def test_card_command_writes_readme_with_the_method_licence(pixel_checkpoint, capsys):
    from hf_unified_pretrain.cards import card_metadata

    main(["card", str(pixel_checkpoint), "--method", "itpn", "--size", "tiny"])
    readme = pixel_checkpoint / "README.md"
    assert capsys.readouterr().out.strip() == str(readme)
    assert card_metadata(readme)["license"] == "other"  # the iTPN entry's licence
    assert "# iTPN tiny" in readme.read_text()


@pytest.mark.parametrize("entry", method_params("converter"))
def test_convert_of_a_missing_checkpoint_exits_with_the_message_not_a_traceback(entry, tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", entry.name, "--checkpoint", str(missing), "--output_dir", str(tmp_path / "out")])
    message = str(exit_info.value.code)
    assert message.startswith(f"hf-unified-pretrain convert {entry.name}: error: ") and str(missing) in message
    assert isinstance(exit_info.value.__cause__, FileNotFoundError)
    assert not (tmp_path / "out").exists()


def test_convert_of_a_checkpoint_that_does_not_fit_lists_the_keys_and_exits(tmp_path):
    from safetensors.torch import save_file

    checkpoint = tmp_path / "stranger.safetensors"
    save_file({"not_a_beit_key.weight": torch.zeros(2)}, str(checkpoint))
    config = {"model_type": "beit", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 64, "image_size": 32, "patch_size": 8}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "mvp", "--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "out")])
    message = str(exit_info.value.code)
    assert message.startswith("hf-unified-pretrain convert mvp: error: ") and "not_a_beit_key.weight" in message
    assert isinstance(exit_info.value.__cause__, ConversionError)
