"""Parity of converted original MultiMAE weights with every fixture in ../shared/parity/multimae/ (eager and sdpa),
the timm export layout, error listings and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoImageProcessor

from hf_unified_pretrain.data import image_size_from_processor
from hf_unified_pretrain.models.multimae import (
    MultiMAEConfig,
    MultiMAEForImageClassification,
    MultiMAEForPreTraining,
    MultiMAEModel,
)
from hf_unified_pretrain.models.multimae.convert_multimae_original_to_hf import (
    config_from_original,
    convert_state_dict,
    detect_kind,
    load_converted,
    main,
)
from tests.conftest import shared_path

TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


def _fixtures(prefix: str) -> list[Path]:
    folder = shared_path("parity", "multimae")
    found = sorted(folder.glob(f"{prefix}_*.safetensors"))
    assert found, f"no {prefix}_* fixture in {folder}"
    return found


def _load(path: Path) -> tuple[dict, dict]:
    return load_file(str(path)), json.loads(path.with_suffix(".json").read_text())


def _original(tensors: dict) -> dict:
    return {key: value for key, value in tensors.items() if key.startswith("state_dict.")}


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_pretraining_fixtures(attn):
    for path in _fixtures("multimae"):
        tensors, meta = _load(path)
        model, _ = load_converted(_original(tensors), meta)
        assert isinstance(model, MultiMAEForPreTraining)
        model.set_attn_implementation(attn)
        inputs = {key[2:]: value for key, value in tensors.items() if key.startswith("x.")}
        masks = {key[len("task_masks.") :]: value for key, value in tensors.items() if key.startswith("task_masks.")}
        with torch.no_grad():
            outputs = model(modalities=inputs, bool_masked_pos={k: v.bool() for k, v in masks.items()})
        expected_tasks = {key[len("preds.") :] for key in tensors if key.startswith("preds.")}
        assert set(outputs.logits) == expected_tasks, path.name
        for task in expected_tasks:
            torch.testing.assert_close(outputs.logits[task], tensors[f"preds.{task}"], **TOLERANCE, msg=path.name)
            torch.testing.assert_close(outputs.losses[task], tensors[f"losses.{task}"], **TOLERANCE, msg=path.name)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_multivit_fixtures_encoder_and_heads(attn):
    for path in _fixtures("multivit"):
        tensors, meta = _load(path)
        original = _original(tensors)
        encoder_only = {k: v for k, v in original.items() if ".output_adapters." not in k}
        model, _ = load_converted(encoder_only, meta)
        assert isinstance(model, MultiMAEModel)
        model.set_attn_implementation(attn)
        with torch.no_grad():
            tokens = model(tensors["x"]).last_hidden_state
        torch.testing.assert_close(tokens, tensors["encoder_tokens"], **TOLERANCE, msg=path.name)
        heads = {"cls": ("cls_logits", MultiMAEForImageClassification), "semseg": ("semseg_logits", None)}
        for head, (output_key, expected_class) in heads.items():
            if output_key not in tensors:
                continue
            others = [name for name in heads if name != head]
            subset = {k: v for k, v in original.items() if not any(f".output_adapters.{o}." in k for o in others)}
            model, _ = load_converted(subset, meta)
            if expected_class is not None:
                assert isinstance(model, expected_class)
            model.set_attn_implementation(attn)
            with torch.no_grad():
                logits = model(tensors["x"]).logits
            torch.testing.assert_close(logits, tensors[output_key], **TOLERANCE, msg=f"{path.name} {head}")


def _multivit_rgb_encoder() -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    tensors, meta = _load(_fixtures("multivit")[0])
    original = {k[len("state_dict.") :]: v for k, v in _original(tensors).items() if "output_adapters" not in k}
    return original, meta, tensors["x"], tensors["encoder_tokens"]


def _to_timm(original: dict) -> dict:
    """The original `multimae_to_vit` export: cls_token, flattened pos_embed with a zero [CLS] row, blocks.*."""
    timm = {"cls_token": original["global_tokens"]}
    pos = original["input_adapters.rgb.pos_emb"]
    pos = pos.flatten(2).transpose(1, 2)
    timm["pos_embed"] = torch.cat([torch.zeros(1, 1, pos.shape[-1]), pos], dim=1)
    timm["patch_embed.proj.weight"] = original["input_adapters.rgb.proj.weight"]
    timm["patch_embed.proj.bias"] = original["input_adapters.rgb.proj.bias"]
    for key, value in original.items():
        if key.startswith("encoder."):
            timm["blocks." + key[len("encoder.") :]] = value
    return timm


def test_timm_export_reproduces_the_multivit_tokens():
    original, meta, pixels, expected = _multivit_rgb_encoder()
    timm = _to_timm(original)
    assert detect_kind(timm) == "timm"
    model, config = load_converted(timm, meta)
    assert config.input_modalities == ["rgb"] and config.num_global_tokens == 1
    with torch.no_grad():
        tokens = model(pixels).last_hidden_state
    # timm puts [CLS] first; ours keeps MultiMAE's layout (patch tokens, then the global token).
    torch.testing.assert_close(tokens, expected, **TOLERANCE)


def test_unknown_and_missing_keys_are_listed():
    original, meta, _, _ = _multivit_rgb_encoder()
    config = config_from_original(meta, "multivit", state_dict=original)
    with pytest.raises(KeyError, match="encoder.0.attn.extra"):
        convert_state_dict({**original, "encoder.0.attn.extra.weight": torch.zeros(1)}, config)
    broken = {k: v for k, v in original.items() if k != "encoder.1.norm2.weight"}
    with pytest.raises(KeyError, match="encoder.layer.1.layernorm_after.weight"):
        load_converted(broken, meta)


def test_config_from_run_args_of_the_released_base_model():
    args = {
        "model": "pretrain_multimae_base",
        "in_domains": "rgb-depth-semseg",
        "out_domains": "rgb-depth-semseg",
        "decoder_dim": 256,
        "decoder_depth": 2,
        "decoder_num_heads": 8,
        "num_encoded_tokens": 98,
        "input_size": 224,
        "patch_size": 16,
        "extra_norm_pix_loss": True,
    }
    config = config_from_original(args, "pretrain")
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)
    assert config.decoder_tasks == {"rgb": "rgb", "depth": "depth", "semseg": "semseg", "norm_rgb": "rgb"}
    assert config.modality("semseg").stride_level == 4 and config.modality("semseg").num_classes == 133
    large = config_from_original({**args, "model": "pretrain_multimae_large"}, "pretrain")
    assert (large.hidden_size, large.num_hidden_layers, large.num_attention_heads) == (1024, 24, 16)


def test_command_line_writes_a_loadable_folder(tmp_path):
    tensors, meta = _load(_fixtures("multimae")[0])
    checkpoint = tmp_path / "original.safetensors"
    save_file({k[len("state_dict.") :]: v.contiguous() for k, v in _original(tensors).items()}, str(checkpoint))
    heads = [
        "--set",
        f"num_attention_heads={meta['config.num_heads']}",
        f"decoder_num_attention_heads={meta['config.decoder.heads']}",
    ]
    main(["--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "out"), *heads])
    reloaded = MultiMAEForPreTraining.from_pretrained(tmp_path / "out")
    assert isinstance(reloaded.config, MultiMAEConfig)
    reference, _ = load_converted(_original(tensors), meta)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value)
    assert reloaded.config.num_attention_heads == meta["config.num_heads"]
    assert "MultiMAE" in (tmp_path / "out" / "README.md").read_text()
    processor = AutoImageProcessor.from_pretrained(tmp_path / "out")
    size = reloaded.config.image_size
    assert image_size_from_processor(processor) == (tuple(size) if isinstance(size, list) else (size, size))


_INVERSE_BLOCK = {
    "layernorm_before": "norm1",
    "attention.qkv": "attn.qkv",
    "attention.proj": "attn.proj",
    "layernorm_after": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def _to_original_keys(state_dict: dict) -> dict:
    """Our keys -> the original MultiMAE layout (the inverse of convert_state_dict), to test structure inference."""
    import re

    out = {}
    for key, value in state_dict.items():
        new = key.replace("multimae.", "", 1)
        new = new.replace("position_embeddings", "pos_emb").replace("class_embeddings", "class_emb")
        new = new.replace(".projection.", ".proj.")
        if m := re.match(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$", new):
            new = f"encoder.{m.group(1)}.{_INVERSE_BLOCK[m.group(2)]}.{m.group(3)}"
        if m := re.match(r"decoders\.([^.]+)\.layers\.(\d+)\.(.+)\.(weight|bias)$", new):
            new = f"decoders.{m.group(1)}.decoder_transformer.{m.group(2)}.{_INVERSE_BLOCK[m.group(3)]}.{m.group(4)}"
        new = new.replace(".cross_attention.", ".decoder.").replace("decoders.", "output_adapters.", 1)
        out[new] = value
    return out


def test_structure_of_other_sizes_is_read_from_the_weights():
    """A non-square 2-global-token model with other widths, depths, classes and MLP ratios converts back to itself."""
    config = MultiMAEConfig.from_preset(
        "tiny",
        image_size=[32, 48],
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=3,
        mlp_ratio=2.0,
        num_global_tokens=2,
        decoder_hidden_size=24,
        decoder_num_hidden_layers=2,
        decoder_num_attention_heads=3,
        modalities=[
            {"name": "rgb", "kind": "image"},
            {"name": "depth", "kind": "depth", "num_channels": 1},
            {"name": "semseg", "kind": "segmentation", "num_classes": 11, "stride_level": 4, "class_embed_dim": 6},
        ],
    )
    torch.manual_seed(0)
    ours = MultiMAEForPreTraining(config).eval()
    original = _to_original_keys(ours.state_dict())
    kwargs = {"num_heads": 3, "decoder_num_heads": 3}
    rebuilt, rebuilt_config = load_converted(original, kwargs)
    for field in ("image_size", "hidden_size", "num_hidden_layers", "mlp_ratio", "num_global_tokens",
                  "decoder_hidden_size", "decoder_num_hidden_layers", "modalities", "decoder_tasks"):  # fmt: skip
        assert getattr(rebuilt_config, field) == getattr(config, field), field
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "rgb": torch.randn(1, 3, 32, 48, generator=generator),
        "depth": torch.randn(1, 1, 32, 48, generator=generator),
        "semseg": torch.randint(0, 11, (1, 8, 12), generator=generator),
    }
    masks = {name: torch.rand(1, 24, generator=generator) > 0.5 for name in inputs}
    keep = sum(int((~m).sum()) for m in masks.values())
    assert keep > 0
    with torch.no_grad():
        expected = ours(modalities=inputs, bool_masked_pos=masks)
        got = rebuilt(modalities=inputs, bool_masked_pos=masks)
    for task in expected.logits:
        torch.testing.assert_close(got.logits[task], expected.logits[task])
