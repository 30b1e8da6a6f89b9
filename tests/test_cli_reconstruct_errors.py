"""`reconstruct` refuses checkpoints whose decoder/head weights are missing (it would draw random weights)."""

import pytest
from PIL import Image

from hf_unified_pretrain.cli import main
from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNImageProcessor, ITPNModel


def test_reconstruct_on_a_checkpoint_without_a_decoder_is_an_error(tmp_path):
    folder = tmp_path / "encoder_only"
    ITPNModel(ITPNConfig.from_preset("itpn-tiny-test")).save_pretrained(folder)  # no pixel decoder saved
    ITPNImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    image = tmp_path / "photo.png"
    Image.new("RGB", (40, 40), (20, 120, 200)).save(image)

    with pytest.raises(SystemExit) as exit_info:
        main(["reconstruct", str(folder), str(image), "--output_dir", str(tmp_path / "fig")])

    message = str(exit_info.value.code)
    assert "holds ITPNModel" in message and "decoder" in message and "ITPNForPreTraining.save_pretrained" in message
    assert "\n" not in message
    assert not (tmp_path / "fig" / "reconstruction.png").exists()
