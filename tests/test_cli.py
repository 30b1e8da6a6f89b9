"""The package command line: list, card, reconstruct on a freshly trained tiny checkpoint."""

import pytest
from PIL import Image

from hf_unified_pretrain.cli import main
from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNForPreTraining, ITPNImageProcessor


def test_list_names_every_registered_method(capsys):
    main(["list"])
    out = capsys.readouterr().out
    assert "ITPNForPreTraining" in out and "MVPForPreTraining" in out


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
    assert written.endswith("reconstruction.png") and (tmp_path / "fig" / "reconstruction.png").stat().st_size > 0


def test_card_command_writes_readme(pixel_checkpoint, capsys):
    main(["card", str(pixel_checkpoint), "--method", "itpn", "--size", "tiny"])
    assert (pixel_checkpoint / "README.md").read_text().count("iTPN") > 0


def test_convert_unknown_method_is_a_clear_error():
    with pytest.raises(SystemExit, match="No converter for 'amdim'"):
        main(["convert", "amdim", "x.pth", "out"])
