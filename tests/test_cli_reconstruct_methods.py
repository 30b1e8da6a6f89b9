"""`reconstruct` per method: MultiMAE folders get the cross-modal prediction picture; folders it cannot draw (other
methods, encoders without their pre-training head, foreign models) end in one line naming what the folder holds."""

import json

import pytest
import torch
from PIL import Image

from hf_unified_pretrain.cli import main
from hf_unified_pretrain.models.amdim import AMDIMConfig, AMDIMForPreTraining
from hf_unified_pretrain.models.multimae import MultiMAEConfig, MultiMAEForPreTraining
from hf_unified_pretrain.models.registry import image_processor_for


def _images(tmp_path, count=2):
    paths = []
    for index in range(count):
        path = tmp_path / f"photo{index}.png"
        Image.new("RGB", (40, 36), (40 + 90 * index, 120, 200 - 60 * index)).save(path)
        paths.append(str(path))
    return paths


def _save(model, folder):
    model.save_pretrained(folder)
    image_processor_for(model.config).save_pretrained(folder)
    return str(folder)


def test_multimae_folder_gets_the_cross_modal_prediction_picture(tmp_path, capsys):
    torch.manual_seed(0)
    config = MultiMAEConfig.from_preset("tiny")
    folder = _save(MultiMAEForPreTraining(config), tmp_path / "multimae")
    images = _images(tmp_path)

    main(["reconstruct", folder, *images, "--output_dir", str(tmp_path / "fig"), "--seed", "3"])

    written = capsys.readouterr().out.strip().splitlines()[-1]
    assert written == str(tmp_path / "fig" / "cross_modal_predictions.png")
    with Image.open(written) as figure:
        # two rows (one per image) of rgb input + rgb visible + one prediction per decoder task
        columns = 2 + len(config.decoder_tasks)
        assert columns >= 4
        assert figure.size[0] / figure.size[1] == pytest.approx((2.2 * columns) / (2.4 * 2), rel=0.02)
        assert len(set(figure.convert("RGB").getdata())) > 50  # drawn, not a blank canvas


def test_multimae_picture_depends_on_the_seed_only(tmp_path, capsys):
    folder = _save(MultiMAEForPreTraining(MultiMAEConfig.from_preset("tiny")), tmp_path / "multimae")
    images = _images(tmp_path, 1)
    pictures = []
    for seed, name in (("1", "a"), ("1", "b"), ("2", "c")):
        main(["reconstruct", folder, *images, "--output_dir", str(tmp_path / name), "--seed", seed])
        with Image.open(tmp_path / name / "cross_modal_predictions.png") as figure:
            pictures.append(list(figure.convert("RGB").getdata()))
    assert pictures[0] == pictures[1]
    assert pictures[0] != pictures[2]  # another mask


def _exit_message(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    message = str(exit_info.value.code)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_amdim_folder_is_refused_naming_the_supported_checkpoints(tmp_path):
    folder = _save(AMDIMForPreTraining(AMDIMConfig.from_preset("tiny")), tmp_path / "amdim")
    message = _exit_message(["reconstruct", folder, *_images(tmp_path), "--output_dir", str(tmp_path / "fig")])
    assert "AMDIMForPreTraining (AMDIM)" in message
    assert "iTPN, MVP and MultiMAE" in message and "--teacher" not in message
    assert not (tmp_path / "fig").exists()


def test_foreign_model_folder_is_refused_naming_its_model_type(tmp_path):
    folder = tmp_path / "vit"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"model_type": "vit", "architectures": ["ViTForMaskedImageModeling"]})
    )
    message = _exit_message(["reconstruct", str(folder), *_images(tmp_path)])
    assert "ViTForMaskedImageModeling" in message and "'vit'" in message and "iTPN, MVP and MultiMAE" in message


def test_folder_without_config_is_refused(tmp_path):
    message = _exit_message(["reconstruct", str(tmp_path), *_images(tmp_path)])
    assert "has no config.json" in message


def test_reconstruct_help_names_the_supported_checkpoints(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["reconstruct", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Supported: iTPN, MVP and MultiMAE pre-training folders" in text
    assert "cross-modal prediction picture" in text
    for help_text in ("supported pre-training model", "image files to run the model on", "seed of the random mask"):
        assert help_text in text
