"""`from_preset` rejects override keys that are no field of the config (a misspelt `hiden_size` used to be stored
silently and ignored), while the keyword arguments every transformers config takes keep working."""

import pytest

from tests.registry_helpers import method_entries


@pytest.mark.parametrize(
    "entry", [pytest.param(entry, id=entry.name) for entry in method_entries("presets", "test_preset")]
)
def test_a_misspelt_override_names_the_key_and_the_field_meant(entry):
    config_class = entry.load("config")
    with pytest.raises(ValueError, match=r"unknown field\(s\) 'hiden_size' \(did you mean '\w+'\?\)"):
        config_class.from_preset(entry.test_preset, hiden_size=64)


@pytest.mark.parametrize("entry", [pytest.param(entry, id=entry.name) for entry in method_entries("test_preset")])
def test_base_config_kwargs_still_pass(entry):
    config_class = entry.load("config")
    labels = {0: "cat", 1: "dog", 2: "bird"}
    config = config_class.from_preset(entry.test_preset, num_labels=3, id2label=labels, output_attentions=True)
    assert config.num_labels == 3 and config.id2label == labels and config.output_attentions is True
    assert config_class.from_preset(entry.test_preset, num_labels=4).num_labels == 4
    stages = getattr(config, "stage_names", None)
    if stages is not None and entry.name != "m3i":
        assert config_class.from_preset(entry.test_preset, out_features=stages[1:3]).out_features == stages[1:3]


def test_itpn_and_mvp_hint_the_closest_field_and_mvp_keeps_its_old_spellings():
    from hf_unified_pretrain.models.itpn import ITPNConfig
    from hf_unified_pretrain.models.mvp import MVPConfig

    with pytest.raises(ValueError, match=r"'hiden_size' \(did you mean 'hidden_size'\?\), 'mask_ration'"):
        MVPConfig.from_preset("tiny", mask_ration=0.5, hiden_size=64)
    with pytest.raises(ValueError, match=r"'patch_sise' \(did you mean 'patch_size'\?\)"):
        ITPNConfig.from_preset("itpn-tiny-test", patch_sise=8)
    assert MVPConfig.from_preset("tiny", num_masked_patches=5).num_masking_patches == 5
