"""Conversion of original InternImage checkpoints: parity with every `../shared/parity/m3i/internimage_*` fixture
(logits and all four stage features, through `config_from_original` + `convert_state_dict`), original key layouts of
the other sizes and options loaded strictly, the Hub's `model.` layout, key errors and the command line."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoImageProcessor

from hf_unified_pretrain.conversion import ConversionError
from hf_unified_pretrain.data import image_size_from_processor
from hf_unified_pretrain.models.internimage import (
    INTERNIMAGE_PRESETS,
    InternImageBackbone,
    InternImageConfig,
    InternImageForImageClassification,
)
from hf_unified_pretrain.models.internimage.convert_internimage_original_to_hf import (
    config_from_original,
    convert_state_dict,
    main,
)
from tests.conftest import SHARED_ROOT, shared_path

FIXTURE_DIR = ("parity", "m3i")
TOLERANCE = dict(atol=1e-5, rtol=1e-4)


def _fixture_names() -> list[str]:
    folder = SHARED_ROOT.joinpath(*FIXTURE_DIR)
    names = sorted(path.stem for path in folder.glob("internimage_*.safetensors"))
    # Without ../shared one placeholder runs and skips (or fails when CI=true) through `shared_path`.
    return names or ["internimage_T_like_tiny"]


def _load_fixture(name: str) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    tensors = load_file(shared_path(*FIXTURE_DIR, f"{name}.safetensors"))
    meta = json.loads(shared_path(*FIXTURE_DIR, f"{name}.json").read_text())
    kwargs = {key[len("config.") :]: value for key, value in meta.items() if key.startswith("config.")}
    state_dict = {key[len("state_dict.") :]: value for key, value in tensors.items() if key.startswith("state_dict.")}
    return kwargs, state_dict, tensors


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("name", _fixture_names())
def test_converted_classifier_reproduces_the_original(name, attn_implementation):
    kwargs, state_dict, tensors = _load_fixture(name)
    config = config_from_original(kwargs, "classification")
    model = InternImageForImageClassification._from_config(config, attn_implementation=attn_implementation).eval()
    model.load_state_dict(convert_state_dict(state_dict, config, kind="classification"), strict=True)
    with torch.no_grad():
        outputs = model(tensors["x"], output_hidden_states=True)
    torch.testing.assert_close(outputs.logits, tensors["logits"], **TOLERANCE)
    stages = outputs.hidden_states[1:]
    assert len(stages) == len([key for key in tensors if key.startswith("stage_features_nhwc.")])
    for index, stage in enumerate(stages):
        torch.testing.assert_close(stage.permute(0, 2, 3, 1), tensors[f"stage_features_nhwc.{index}"], **TOLERANCE)


@pytest.mark.parametrize("name", _fixture_names())
def test_converted_backbone_returns_the_original_stage_features(name):
    """The det/seg backbone: stage outputs before downsampling, NCHW, strides 4..32, channels C..8C; the Hub's
    remote-code layout (`model.` prefix) converts to the same weights."""
    kwargs, state_dict, tensors = _load_fixture(name)
    config = config_from_original(kwargs, "backbone")
    hub_layout = {f"model.{key}": value for key, value in state_dict.items()}
    model = InternImageBackbone(config).eval()
    model.load_state_dict(convert_state_dict(hub_layout, config, kind="backbone"), strict=True)
    with torch.no_grad():
        feature_maps = model(tensors["x"]).feature_maps
    height = tensors["x"].shape[-1]
    assert model.channels == [config.channels * 2**i for i in range(4)]
    for index, feature_map in enumerate(feature_maps):
        assert feature_map.shape[-1] == height // 2 ** (index + 2)
        torch.testing.assert_close(
            feature_map.permute(0, 2, 3, 1), tensors[f"stage_features_nhwc.{index}"], **TOLERANCE
        )


def _original_state_dict(config: InternImageConfig, with_head: bool = True) -> dict[str, torch.Tensor]:
    """Random tensors under the original's key names and shapes for `config`, written from the original structure
    (classification/models/intern_image.py), independently of our module names."""
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=generator)

    c, keys = config.channels, {}
    keys |= {"patch_embed.conv1.weight": rand(c // 2, 3, 3, 3), "patch_embed.conv1.bias": rand(c // 2)}
    keys |= {"patch_embed.norm1.1.weight": rand(c // 2), "patch_embed.norm1.1.bias": rand(c // 2)}
    keys |= {"patch_embed.conv2.weight": rand(c, c // 2, 3, 3), "patch_embed.conv2.bias": rand(c)}
    keys |= {"patch_embed.norm2.1.weight": rand(c), "patch_embed.norm2.1.bias": rand(c)}
    points = config.kernel_size**2 - int(config.remove_center)
    dw = config.dw_kernel_size or config.kernel_size
    for i, (depth, group) in enumerate(zip(config.depths, config.groups)):
        width = c * 2**i
        for j in range(depth):
            p = f"levels.{i}.blocks.{j}."
            for norm in ["norm1.0", "norm2.0"] + (
                ["res_post_norm1.0", "res_post_norm2.0"] if config.res_post_norm else []
            ):
                keys |= {f"{p}{norm}.weight": rand(width), f"{p}{norm}.bias": rand(width)}
            keys |= {f"{p}dcn.dw_conv.0.weight": rand(width, 1, dw, dw), f"{p}dcn.dw_conv.0.bias": rand(width)}
            keys |= {f"{p}dcn.dw_conv.1.1.weight": rand(width), f"{p}dcn.dw_conv.1.1.bias": rand(width)}
            for name, out in (("offset", group * points * 2), ("mask", group * points)):
                keys |= {f"{p}dcn.{name}.weight": rand(out, width), f"{p}dcn.{name}.bias": rand(out)}
            for name in ("input_proj", "output_proj"):
                keys |= {f"{p}dcn.{name}.weight": rand(width, width), f"{p}dcn.{name}.bias": rand(width)}
            if config.center_feature_scale:
                keys |= {f"{p}dcn.center_feature_scale_proj_weight": rand(group, width)}
                keys |= {f"{p}dcn.center_feature_scale_proj_bias": rand(group)}
            hidden = int(width * config.mlp_ratio)
            keys |= {f"{p}mlp.fc1.weight": rand(hidden, width), f"{p}mlp.fc1.bias": rand(hidden)}
            keys |= {f"{p}mlp.fc2.weight": rand(width, hidden), f"{p}mlp.fc2.bias": rand(width)}
            if config.layer_scale is not None:
                keys |= {f"{p}gamma1": rand(width), f"{p}gamma2": rand(width)}
        if not config.post_norm or config.center_feature_scale:
            keys |= {f"levels.{i}.norm.0.weight": rand(width), f"levels.{i}.norm.0.bias": rand(width)}
        if config.level2_post_norm and i == 2:
            for k in range(len(config.level2_post_norm_block_ids)):
                keys |= {
                    f"levels.2.post_norms.{k}.0.weight": rand(width),
                    f"levels.2.post_norms.{k}.0.bias": rand(width),
                }
        if i < len(config.depths) - 1:
            keys |= {f"levels.{i}.downsample.conv.weight": rand(2 * width, width, 3, 3)}
            keys |= {f"levels.{i}.downsample.norm.1.weight": rand(2 * width)}
            keys |= {f"levels.{i}.downsample.norm.1.bias": rand(2 * width)}
    if not with_head:
        return keys
    last = c * 2 ** (len(config.depths) - 1)
    if config.use_clip_projector:
        d, e = config.clip_pretrain_embed_dim, config.clip_embed_dim
        keys |= {"dcnv3_head_x4.0.weight": rand(4 * d, last, 1, 1), "dcnv3_head_x4.0.bias": rand(4 * d)}
        keys |= {"dcnv3_head_x3.weight": rand(d, last // 2, 1, 1), "dcnv3_head_x3.bias": rand(d)}
        for x in "qkv":
            keys |= {f"clip_projector.norm1_{x}.0.weight": rand(d), f"clip_projector.norm1_{x}.0.bias": rand(d)}
            keys |= {f"clip_projector.cross_dcn.{x}.weight": rand(d, d), f"clip_projector.cross_dcn.{x}_bias": rand(d)}
        keys |= {"clip_projector.cross_dcn.proj.weight": rand(e, d), "clip_projector.cross_dcn.proj.bias": rand(e)}
        keys |= {"fc_norm.0.weight": rand(e), "fc_norm.0.bias": rand(e)}
        keys |= {"head.weight": rand(config.num_labels, e), "head.bias": rand(config.num_labels)}
    else:
        h = int(last * config.cls_scale)
        keys |= {"conv_head.0.weight": rand(h, last, 1, 1)}
        keys |= {f"conv_head.1.0.{n}": rand(h) for n in ("weight", "bias", "running_mean")}
        keys |= {"conv_head.1.0.running_var": rand(h).abs(), "conv_head.1.0.num_batches_tracked": torch.tensor(7)}
        keys |= {"head.weight": rand(config.num_labels, h), "head.bias": rand(config.num_labels)}
    return keys


def _small(preset: str, **changes) -> dict:
    """The preset's options with tiny widths/depths (the original's argument names)."""
    fields = dict(INTERNIMAGE_PRESETS[preset])
    fields.update(channels=16, depths=[1, 1, 3, 1], groups=[1, 2, 4, 8], num_classes=5)
    fields.pop("image_size", None)
    if fields.get("level2_post_norm"):
        fields["level2_post_norm_block_ids"] = [0, 2]
    if fields.get("use_clip_projector"):
        fields["cls_scale"] = 1.5
    fields.update(changes)
    return fields


@pytest.mark.parametrize("preset", sorted(p for p in INTERNIMAGE_PRESETS if p != "tiny"))
@pytest.mark.parametrize("kind", ["classification", "backbone"])
def test_other_sizes_convert_and_load_strictly(preset, kind):
    config = config_from_original(_small(preset), kind)
    original = _original_state_dict(config, with_head=kind == "classification")
    converted = convert_state_dict(original, config, kind=kind)
    model_class = InternImageForImageClassification if kind == "classification" else InternImageBackbone
    model = model_class(config)
    model.load_state_dict(converted, strict=True)
    # every original tensor lands somewhere, unchanged
    assert sorted(t.sum().item() for t in converted.values()) == sorted(t.sum().item() for t in original.values())


def test_center_feature_scale_keeps_the_stage_norm_with_post_norm():
    """G: post-norm blocks, but the center feature scale gate means every stage still ends with a LayerNorm."""
    config = config_from_original(_small("internimage-g"), "classification")
    assert config.post_norm and config.center_feature_scale and config.has_stage_norm
    model = InternImageForImageClassification(config)
    assert all(stage.norm is not None for stage in model.internimage.encoder.stages)
    assert not config_from_original(_small("internimage-b"), "classification").has_stage_norm


def test_remove_center_and_hub_layout_convert():
    config = config_from_original(_small("internimage-t", remove_center=True), "classification")
    original = {f"model.{key}": value for key, value in _original_state_dict(config).items()}
    InternImageForImageClassification(config).load_state_dict(convert_state_dict(original, config), strict=True)


def test_unknown_missing_and_mismatched_keys_are_listed():
    config = config_from_original(_small("internimage-t"), "classification")
    original = _original_state_dict(config)
    original["levels.0.blocks.0.dcn.spurious"] = torch.zeros(1)
    del original["levels.1.blocks.0.mlp.fc1.bias"]
    original["head.weight"] = torch.zeros(3, 3)
    with pytest.raises(ConversionError) as error:
        convert_state_dict(original, config, kind="classification")
    assert error.value.unknown == ["levels.0.blocks.0.dcn.spurious"]
    assert error.value.missing == ["internimage.encoder.stages.1.layers.0.mlp.fc1.bias"]
    assert error.value.mismatched == ["classifier.weight"]


def test_a_config_of_another_block_order_is_reported():
    post_norm = config_from_original(_small("internimage-b"), "classification")
    pre_norm = config_from_original(_small("internimage-t"), "classification")
    with pytest.raises(ConversionError, match="post_norm"):
        convert_state_dict(_original_state_dict(post_norm), pre_norm, kind="classification")


def test_backbone_kind_leaves_out_heads_and_framework_keys():
    config = config_from_original(_small("internimage-h"), "backbone")
    original = {f"backbone.{k}": v for k, v in _original_state_dict(config).items()}
    original["decode_head.conv_seg.weight"] = torch.zeros(2)
    converted = convert_state_dict(original, config, kind="backbone")
    assert all(key.startswith("internimage.") for key in converted)
    assert config.out_features == ["stage1", "stage2", "stage3", "stage4"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"norm_layer": "BN"}, "norm_layer='LN'"),
        ({"channelz": 3}, "Unknown InternImage constructor arguments"),
        ({"res_post_norm": True, "layer_scale": 1e-5}, "res_post_norm"),
    ],
)
def test_unsupported_original_arguments_are_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        config_from_original(_small("internimage-t", **changes), "classification")


def test_yaml_field_names_and_original_defaults():
    config = config_from_original({"CHANNELS": 80, "GROUPS": [5, 10, 20, 40], "POST_NORM": True, "LAYER_SCALE": 1e-5})
    assert config.channels == 80 and config.post_norm and config.layer_scale == 1e-5
    assert config.depths == [3, 4, 18, 5]  # the original constructor's default
    assert config.num_labels == 1000


def test_command_line_writes_a_folder_the_classes_load(tmp_path):
    fields = _small("internimage-h")
    config = config_from_original(fields, "classification")
    checkpoint = tmp_path / "internimage_h_tiny.pth"
    torch.save({"model": _original_state_dict(config), "args": fields}, checkpoint)
    model = main(["--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "out")])
    reloaded = InternImageForImageClassification.from_pretrained(tmp_path / "out").eval()
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixels).logits, model(pixels).logits)
    processor = AutoImageProcessor.from_pretrained(tmp_path / "out")
    assert image_size_from_processor(processor) == (config.image_size, config.image_size)
    # the backbone kind, from the Hub's remote-code layout, with a --set override of a non-architecture field
    checkpoint = tmp_path / "internimage_h_backbone.pth"
    torch.save(
        {"model": {f"model.{k}": v for k, v in _original_state_dict(config).items()}, "args": fields}, checkpoint
    )
    argv = ["--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "bb"), "--kind", "backbone"]
    backbone = main([*argv, "--no_model_card", "--set", "drop_path_rate=0.3"])
    assert isinstance(backbone, InternImageBackbone) and backbone.config.drop_path_rate == 0.3
    assert InternImageBackbone.from_pretrained(tmp_path / "bb").out_features == [
        "stage1",
        "stage2",
        "stage3",
        "stage4",
    ]
