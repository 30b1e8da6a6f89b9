"""MultiMAEConfig.select_modalities: a config restricted to some modalities (RGB-only pre-training)."""

import pytest

from hf_unified_pretrain.models.multimae import MultiMAEConfig, MultiMAEForPreTraining


def test_select_modalities_keeps_per_modality_settings_of_the_kept_ones():
    config = MultiMAEConfig.from_preset(
        "tiny",
        dirichlet_alpha=[0.5, 2.0, 3.0],
        loss_weights={"rgb": 0.25, "norm_rgb": 2.0, "depth": 4.0},
        head_modalities=["depth"],
    )
    restricted = config.select_modalities(["semseg", "rgb"])
    assert [spec["name"] for spec in restricted.modalities] == ["rgb", "semseg"]
    assert restricted.input_modalities == ["rgb", "semseg"] and restricted.output_modalities == ["rgb", "semseg"]
    assert restricted.dirichlet_alpha == [0.5, 3.0]
    assert restricted.loss_weights == {"rgb": 0.25, "norm_rgb": 2.0}
    assert restricted.head_modalities == ["rgb"]  # depth is gone: the first kept input reads the heads
    assert restricted.modality("semseg").num_classes == config.modality("semseg").num_classes
    assert config.input_modalities == ["rgb", "depth", "semseg"]  # the original config is untouched


def test_rgb_only_model_has_no_other_adapters_or_decoders():
    model = MultiMAEForPreTraining(MultiMAEConfig.from_preset("tiny").select_modalities(["rgb"]))
    assert list(model.multimae.input_adapters) == ["rgb"]
    assert sorted(model.decoders) == ["norm_rgb", "rgb"]


def test_without_an_image_modality_the_norm_rgb_decoder_goes():
    restricted = MultiMAEConfig.from_preset("tiny").select_modalities(["depth"])
    assert not restricted.extra_norm_rgb_output and list(restricted.decoder_tasks) == ["depth"]


@pytest.mark.parametrize("names", [[], ["rgb", "normals"]])
def test_select_modalities_rejects_unknown_or_empty(names):
    with pytest.raises(ValueError, match="non-empty subset"):
        MultiMAEConfig.from_preset("tiny").select_modalities(names)
