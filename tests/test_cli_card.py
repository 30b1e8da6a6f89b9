"""`card` reads the method from the folder's config.json: --method is optional and must agree with it."""

import json

import pytest

from hf_unified_pretrain.cli import main
from hf_unified_pretrain.models.amdim import AMDIMConfig, AMDIMForPreTraining


@pytest.fixture(scope="module")
def amdim_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("amdim")
    AMDIMForPreTraining(AMDIMConfig.from_preset("tiny")).save_pretrained(folder)
    return folder


def test_card_without_method_reads_it_from_config(amdim_folder, capsys):
    main(["card", str(amdim_folder), "--size", "tiny"])
    assert capsys.readouterr().out.strip() == str(amdim_folder / "README.md")
    text = (amdim_folder / "README.md").read_text()
    assert "# AMDIM tiny" in text and "iTPN" not in text


def test_card_with_a_mismatching_method_is_refused(amdim_folder):
    (amdim_folder / "README.md").unlink(missing_ok=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["card", str(amdim_folder), "--method", "itpn"])
    message = str(exit_info.value.code)
    assert "--method itpn does not match" in message and "amdim model" in message and "--method amdim" in message
    assert not (amdim_folder / "README.md").exists()


def test_card_with_the_matching_method_works(amdim_folder, capsys):
    main(["card", str(amdim_folder), "--method", "amdim"])
    assert "# AMDIM" in (amdim_folder / "README.md").read_text()


def test_card_of_a_foreign_model_type_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(SystemExit) as exit_info:
        main(["card", str(tmp_path)])
    assert "model_type 'vit'" in str(exit_info.value.code)


def test_card_of_a_folder_without_config_needs_method(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["card", str(tmp_path)])
    assert "has no config.json" in str(exit_info.value.code) and "--method" in str(exit_info.value.code)


def test_card_help_documents_every_argument(capsys):
    with pytest.raises(SystemExit):
        main(["card", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("README.md is written into it", "size name shown in the title", "Hub dataset ids", "PNG of the"):
        assert phrase in text
    assert "name used in the snippets" in text and "read from config.json" in text
