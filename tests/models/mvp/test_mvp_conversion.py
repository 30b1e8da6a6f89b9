"""BEiT → MVP conversion: exact parity with transformers' BEiT on random weights, both key layouts, errors, CLI."""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    BeitConfig,
    BeitForImageClassification,
    BeitForMaskedImageModeling,
    BeitImageProcessorPil,
    BeitModel,
)

import hf_unified_pretrain  # noqa: F401  (registers the Auto classes)
from hf_unified_pretrain.conversion import ConversionError
from hf_unified_pretrain.models.mvp import MVPBackbone, MVPForImageClassification, MVPForPreTraining, MVPModel
from hf_unified_pretrain.models.mvp.convert_mvp_original_to_hf import (
    config_from_original,
    convert_state_dict,
    load_beit_weights,
    main,
    mvp_from_beit,
    verify_against_beit,
)

from .helpers import fixed_mask, pixels

BEIT_CONFIGS = {
    # BEiT pre-training layout: one shared relative position bias, mean pooling, mask token
    "shared-bias+mean-pool": {
        "use_shared_relative_position_bias": True,
        "use_mean_pooling": True,
        "use_mask_token": True,
        "layer_scale_init_value": 0.1,
    },
    # BEiT fine-tuning layout: a bias table per block, [CLS] pooling after a final norm, absolute positions too
    "per-layer-bias+cls-pool": {
        "use_relative_position_bias": True,
        "use_mean_pooling": False,
        "use_absolute_position_embeddings": True,
        "use_mask_token": True,
        "layer_scale_init_value": 0.5,
    },
}


def beit_config(kind: str, **extra) -> BeitConfig:
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    sizes |= {"image_size": 32, "patch_size": 8, "layer_norm_eps": 1e-6}
    return BeitConfig(**{**sizes, **BEIT_CONFIGS[kind], **extra})


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """BEiT zero-initialises [CLS], [MASK], position and bias tables: give every parameter a random value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model.eval()


def to_legacy_layout(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames transformers-v5 BEiT keys to the v4 layout most Hub folders still use."""
    rules = [
        (r"\.layers\.(\d+)\.attention\.q_proj\.", r".encoder.layer.\1.attention.attention.query."),
        (r"\.layers\.(\d+)\.attention\.k_proj\.", r".encoder.layer.\1.attention.attention.key."),
        (r"\.layers\.(\d+)\.attention\.v_proj\.", r".encoder.layer.\1.attention.attention.value."),
        (r"\.layers\.(\d+)\.attention\.o_proj\.", r".encoder.layer.\1.attention.output.dense."),
        (r"\.layers\.(\d+)\.mlp\.fc1\.", r".encoder.layer.\1.intermediate.dense."),
        (r"\.layers\.(\d+)\.mlp\.fc2\.", r".encoder.layer.\1.output.dense."),
        (
            r"\.layers\.(\d+)\.relative_position_bias\.",
            r".encoder.layer.\1.attention.attention.relative_position_bias.",
        ),
        (r"\.layers\.(\d+)\.", r".encoder.layer.\1."),
        (r"\.shared_position_bias\.", r".encoder.relative_position_bias."),
    ]
    legacy = {}
    for key, value in state_dict.items():
        for pattern, replacement in rules:
            if re.search(pattern, key):
                key = re.sub(pattern, replacement, key)
                break
        legacy[key] = value
    # v4 checkpoints also stored the relative position index buffers
    legacy["beit.encoder.layer.0.attention.attention.relative_position_bias.relative_position_index"] = torch.zeros(1)
    return legacy


@pytest.mark.parametrize("kind", sorted(BEIT_CONFIGS))
@pytest.mark.parametrize("size", [32, 48], ids=["train-res", "other-res"])
def test_converted_model_reproduces_beit_model(kind, size):
    beit = randomise(BeitModel(beit_config(kind)))
    config = config_from_original(beit.config.to_dict())
    model = MVPModel(config).eval()
    load_beit_weights(model, {f"beit.{key}": value for key, value in beit.state_dict().items()})

    mask = fixed_mask(num_patches=(size // 8) ** 2)
    with torch.no_grad():
        for kwargs in (
            {"interpolate_pos_encoding": size != 32},
            {"bool_masked_pos": mask, "interpolate_pos_encoding": True},
        ):
            expected = beit(pixels(size=size), output_hidden_states=True, **kwargs)
            actual = model(pixels(size=size), output_hidden_states=True, **kwargs)
            torch.testing.assert_close(actual.last_hidden_state, expected.last_hidden_state)
            torch.testing.assert_close(actual.pooler_output, expected.pooler_output)
            assert len(actual.hidden_states) == len(expected.hidden_states) == 3
            for mine, theirs in zip(actual.hidden_states, expected.hidden_states):
                torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize("kind", sorted(BEIT_CONFIGS))
def test_legacy_and_v5_layouts_convert_to_the_same_weights(kind):
    beit = randomise(BeitForMaskedImageModeling(beit_config(kind)))
    config = config_from_original(beit.config.to_dict())
    current = convert_state_dict(beit.state_dict(), config)
    legacy = convert_state_dict(to_legacy_layout(beit.state_dict()), config)
    assert current.keys() == legacy.keys()
    assert all(torch.equal(current[key], legacy[key]) for key in current)
    # BEiT-MIM's final norm becomes the norm in front of MVP's head; its dVAE-token head has no counterpart.
    torch.testing.assert_close(current["head.layernorm.weight"], beit.layernorm.weight)
    assert not any(key.startswith("lm_head") for key in current)


def test_converted_classifier_reproduces_beit_logits():
    beit = randomise(BeitForImageClassification(beit_config("shared-bias+mean-pool", num_labels=5)))
    config = config_from_original(beit.config.to_dict())
    assert config.num_labels == 5
    model = MVPForImageClassification(config).eval()
    assert load_beit_weights(model, beit.state_dict()) == []
    with torch.no_grad():
        torch.testing.assert_close(model(pixels()).logits, beit(pixels()).logits)


def test_conversion_errors_list_unknown_missing_and_mis_shaped_keys():
    beit = randomise(BeitModel(beit_config("shared-bias+mean-pool")))
    config = config_from_original(beit.config.to_dict())
    state = {f"beit.{key}": value for key, value in beit.state_dict().items()}

    with pytest.raises(ConversionError, match=r"unknown keys.*'beit\.fpn1\.weight'") as info:
        convert_state_dict({**state, "beit.fpn1.weight": torch.zeros(1)}, config)
    assert info.value.unknown == ["beit.fpn1.weight"] and not info.value.missing and not info.value.mismatched
    without = {key: value for key, value in state.items() if key != "beit.layers.1.mlp.fc1.weight"}
    with pytest.raises(ConversionError, match=r"missing keys.*'mvp\.layers\.1\.mlp\.fc1\.weight'") as info:
        convert_state_dict(without, config)
    assert info.value.missing == ["mvp.layers.1.mlp.fc1.weight"]
    resized = config_from_original({**beit.config.to_dict(), "image_size": 64})
    with pytest.raises(ConversionError, match=r"shape mismatches.*shared_relative_position_bias") as info:
        convert_state_dict(state, resized)
    assert info.value.mismatched == ["mvp.shared_relative_position_bias.relative_position_bias_table"]


def test_config_conversion_rejects_other_models():
    with pytest.raises(ValueError, match="kind='beit'"):
        config_from_original({}, kind="timm")
    with pytest.raises(ValueError, match="model_type 'vit'"):
        config_from_original({"model_type": "vit"})


def test_config_conversion_keeps_beit_defaults_and_backbone_stages():
    config = config_from_original({"model_type": "beit", "out_indices": [1, 2]})
    # absent fields follow BeitConfig (not MVPConfig) defaults, as transformers would load the folder
    assert config.use_shared_relative_position_bias is False and config.use_mask_token is False
    assert config.layer_norm_eps == BeitConfig().layer_norm_eps
    assert config.out_indices == [1, 2] and config.out_features == ["stage1", "stage2"]


@pytest.fixture(scope="module")
def beit_classifier_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("beit_classifier")
    beit = randomise(BeitForImageClassification(beit_config("per-layer-bias+cls-pool", num_labels=3)))
    beit.save_pretrained(folder)
    BeitImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder, beit


def test_cli_converts_a_beit_folder(beit_classifier_folder, tmp_path):
    folder, beit = beit_classifier_folder
    main(["--checkpoint", str(folder), "--output_dir", str(tmp_path), "--verify", "--set", "teacher_dim=16"])
    model = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert isinstance(model, MVPForImageClassification) and model.config.teacher_dim == 16
    with torch.no_grad():
        torch.testing.assert_close(model(pixels()).logits, beit(pixels()).logits)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(processor).__name__ == "MVPImageProcessor"
    assert list(processor.image_mean) == [0.5, 0.5, 0.5] and processor.size["height"] == 32
    card = (tmp_path / "README.md").read_text()
    assert "mvp" in card.lower() and str(folder) in card


def test_verify_fails_on_an_encoder_weight_that_differs(beit_classifier_folder):
    folder, _ = beit_classifier_folder
    model = mvp_from_beit(MVPModel, folder, teacher_dim=16)
    assert verify_against_beit(model, folder) < 1e-4
    with torch.no_grad():
        model.layers[1].mlp.fc2.bias[3] += 0.1
    with pytest.raises(AssertionError, match="differs from BeitModel by"):
        verify_against_beit(model, folder)


def test_cli_reads_a_pth_file_with_a_wrapper(beit_classifier_folder, tmp_path):
    _, beit = beit_classifier_folder
    torch.save({"model": beit.state_dict()}, tmp_path / "beit.pth")
    config_file = tmp_path / "beit_config.json"
    config_file.write_text(json.dumps(beit.config.to_dict()))
    main(
        [
            "--checkpoint",
            str(tmp_path / "beit.pth"),
            "--config",
            str(config_file),
            "--output_dir",
            str(tmp_path / "out"),
            "--task",
            "model",
            "--no_model_card",
        ]
    )
    assert not (tmp_path / "out" / "README.md").exists()
    model = MVPModel.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        expected = beit.beit(pixels()).pooler_output
        torch.testing.assert_close(model(pixels()).pooler_output, expected)


def test_mvp_from_beit_builds_any_mvp_class(tmp_path):
    mim = randomise(BeitForMaskedImageModeling(beit_config("shared-bias+mean-pool")))
    mim.save_pretrained(tmp_path)
    pretraining = mvp_from_beit(MVPForPreTraining, tmp_path, teacher_dim=16)
    torch.testing.assert_close(pretraining.mvp.embeddings.mask_token, mim.beit.embeddings.mask_token)
    torch.testing.assert_close(pretraining.head.layernorm.bias, mim.layernorm.bias)
    assert pretraining.head.projection.out_features == 16

    classifier = randomise(BeitForImageClassification(beit_config("shared-bias+mean-pool", use_mask_token=False)))
    classifier.save_pretrained(tmp_path / "cls")
    from_classifier = mvp_from_beit(MVPForPreTraining, tmp_path / "cls", teacher_dim=16)
    assert from_classifier.mvp.embeddings.mask_token is not None  # added for pre-training, freshly initialised
    torch.testing.assert_close(from_classifier.mvp.layers[1].mlp.fc2.weight, classifier.beit.layers[1].mlp.fc2.weight)

    backbone = mvp_from_beit(MVPBackbone, tmp_path, out_indices=[1, 2]).eval()
    with torch.no_grad():
        hidden = mim.beit(pixels(), output_hidden_states=True).hidden_states
        maps = backbone(pixels()).feature_maps
    assert len(maps) == 2
    for feature_map, tokens in zip(maps, hidden[1:]):
        torch.testing.assert_close(feature_map, tokens[:, 1:].transpose(1, 2).reshape(2, 32, 4, 4))


def test_package_command_line_converts_a_beit_mim_folder_into_a_pretraining_checkpoint(tmp_path, capsys):
    from hf_unified_pretrain.cli import main as cli_main

    mim = randomise(BeitForMaskedImageModeling(beit_config("shared-bias+mean-pool", image_size=48)))
    mim.save_pretrained(tmp_path / "beit")
    out = tmp_path / "mvp"
    cli_main(["convert", "mvp", "--checkpoint", str(tmp_path / "beit"), "--output_dir", str(out),
              "--set", "teacher_dim=16"])  # fmt: skip
    model = MVPForPreTraining.from_pretrained(out)
    assert model.config.teacher_dim == 16 and model.config.use_mask_token
    torch.testing.assert_close(model.head.layernorm.weight, mim.layernorm.weight)
    processor = AutoImageProcessor.from_pretrained(out)
    assert processor.size == {"height": 48, "width": 48}  # the config's resolution, not the class default 224
    assert capsys.readouterr().out.startswith("Wrote MVPForPreTraining")

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["convert", "mvp", "--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: hf-unified-pretrain convert mvp")
    assert all(flag in usage for flag in ("--checkpoint", "--output_dir", "--kind", "--set", "--task", "--verify"))


def test_verify_success_is_reported_once_at_info_with_the_tolerance(beit_classifier_folder, tmp_path, caplog):
    folder, _ = beit_classifier_folder
    with caplog.at_level("INFO"):
        main(["--checkpoint", str(folder), "--output_dir", str(tmp_path), "--verify", "--task", "pretraining"])
    verified = [record for record in caplog.records if "Verified against" in record.getMessage()]
    assert len(verified) == 1 and verified[0].levelname == "INFO"
    assert re.search(r"max \|MVP - BEiT\| = \S+ <= tolerance 0\.0001", verified[0].getMessage())
    # The freshly initialised pre-training head keys are listed once (they were logged at INFO and WARNING).
    fresh = [record for record in caplog.records if "initialis" in record.getMessage().lower()]
    assert len(fresh) == 1 and "head.projection.weight" in fresh[0].getMessage()
    assert not [record for record in caplog.records if record.levelname == "WARNING" and "BEiT" in record.getMessage()]


def test_verify_failure_is_a_conversion_error_and_saves_nothing(beit_classifier_folder, tmp_path, monkeypatch):
    import hf_unified_pretrain.models.mvp.convert_mvp_original_to_hf as converter

    folder, _ = beit_classifier_folder
    monkeypatch.setattr(converter, "VERIFY_ATOL", -1.0)  # any difference, even 0, is above it
    with pytest.raises(ConversionError, match=r"--verify failed: .*differs from BeitModel by .*nothing was saved"):
        main(["--checkpoint", str(folder), "--output_dir", str(tmp_path / "out"), "--verify"])
    assert not (tmp_path / "out" / "model.safetensors").exists()
