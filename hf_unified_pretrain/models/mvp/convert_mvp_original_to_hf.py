"""Convert a transformers BEiT checkpoint into an MVP checkpoint.

MVP released no code or weights; its student is a BEiT encoder, so the natural "original" checkpoints are BEiT ones
(to start MVP pre-training from BEiT weights, or to fine-tune converted BEiT/MVP-style weights with this package).
Both BEiT key layouts are read: the transformers v5 one (`beit.layers.0.attention.q_proj...`) and the legacy v4 one
found in most Hub folders (`beit.encoder.layer.0.attention.attention.query...`).

Contract shared by every method's converter:
- `config_from_original(original_kwargs, kind="beit") -> MVPConfig` from a `BeitConfig` dict (config.json);
- `convert_state_dict(original_state_dict, config) -> dict` pure key mapping, raising with the list of unknown,
  missing or mis-shaped keys;
- `main()` the command line:

    python -m hf_unified_pretrain.models.mvp.convert_mvp_original_to_hf \
        --checkpoint path/to/beit-folder --output_dir mvp-from-beit [--task auto] [--verify]

Output keys: encoder weights under `mvp.` (loadable by every MVP class, the prefix is added/stripped by
`from_pretrained`), the BEiT-MIM final norm as `head.layernorm.*` (the norm before MVP's prediction head), a BEiT
classifier as `classifier.*`. BEiT's dVAE-token head (`lm_head.*`) has no MVP counterpart and is dropped.
"""

import argparse
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import BeitConfig

from .configuration_mvp import MVPConfig
from .image_processing_mvp import MVPImageProcessor
from .modeling_mvp import MVPForImageClassification, MVPForPreTraining, MVPModel, MVPPreTrainedModel

logger = logging.getLogger(__name__)

# BeitConfig fields that carry over one to one.
_SHARED_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "initializer_range",
    "layer_norm_eps",
    "image_size",
    "patch_size",
    "num_channels",
    "use_mask_token",
    "use_absolute_position_embeddings",
    "use_relative_position_bias",
    "use_shared_relative_position_bias",
    "layer_scale_init_value",
    "drop_path_rate",
    "use_mean_pooling",
    "reshape_hidden_states",
)

# Encoder keys (after removing the `beit.` prefix): (pattern, replacement); None drops the key.
_ENCODER_RULES: list[tuple[str, str | None]] = [
    # buffers of old checkpoints, recomputed by the model
    (r"^.*relative_position_index$", None),
    # embeddings and final norms are named alike in both layouts
    (
        r"^(embeddings\.(?:cls_token|mask_token|position_embeddings|patch_embeddings\.projection\.(?:weight|bias)))$",
        r"\1",
    ),
    (r"^(layernorm\.(?:weight|bias))$", r"\1"),
    (r"^(pooler\.layernorm\.(?:weight|bias))$", r"\1"),
    # shared relative position bias
    (
        r"^(?:encoder\.relative_position_bias|shared_position_bias)\.relative_position_bias_table$",
        "shared_relative_position_bias.relative_position_bias_table",
    ),
    # legacy (v4) block layout
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.query\.(weight|bias)$", r"layers.\1.attention.q_proj.\2"),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.key\.(weight)$", r"layers.\1.attention.k_proj.\2"),
    (r"^encoder\.layer\.(\d+)\.attention\.attention\.value\.(weight|bias)$", r"layers.\1.attention.v_proj.\2"),
    (
        r"^encoder\.layer\.(\d+)\.attention\.attention\.relative_position_bias\.relative_position_bias_table$",
        r"layers.\1.relative_position_bias.relative_position_bias_table",
    ),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)$", r"layers.\1.attention.o_proj.\2"),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)$", r"layers.\1.mlp.fc1.\2"),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)$", r"layers.\1.mlp.fc2.\2"),
    (r"^encoder\.layer\.(\d+)\.lambda_([12])$", r"layers.\1.layer_scale_\2"),
    (r"^encoder\.layer\.(\d+)\.(layernorm_before|layernorm_after)\.(weight|bias)$", r"layers.\1.\2.\3"),
    # transformers v5 block layout
    (r"^layers\.(\d+)\.lambda_([12])$", r"layers.\1.layer_scale_\2"),
    (
        r"^(layers\.\d+\.(?:attention\.[qkvo]_proj|mlp\.fc[12]|layernorm_before|layernorm_after)\.(?:weight|bias))$",
        r"\1",
    ),
    (r"^(layers\.\d+\.relative_position_bias\.relative_position_bias_table)$", r"\1"),
]

# Keys of BEiT head classes (outside the `beit.` prefix).
_HEAD_RULES: list[tuple[str, str | None]] = [
    (r"^layernorm\.(weight|bias)$", r"head.layernorm.\1"),  # BeitForMaskedImageModeling's final norm
    (r"^lm_head\.(weight|bias)$", None),  # logits over the dVAE vocabulary: no MVP counterpart
    (r"^classifier\.(weight|bias)$", r"classifier.\1"),
]


def config_from_original(original_kwargs: dict[str, Any], kind: str = "beit") -> MVPConfig:
    """Builds an `MVPConfig` from a BEiT configuration.

    Args:
        original_kwargs: A `BeitConfig` as a dict (the folder's config.json); absent fields take BeitConfig's
            defaults, as transformers would when loading that folder.
        kind: Original class family; only "beit" (BeitModel / BeitForMaskedImageModeling /
            BeitForImageClassification / BeitBackbone) is supported.

    Returns:
        The MVP configuration of the same encoder (labels and backbone stages included).
    """
    if kind != "beit":
        raise ValueError(
            f"Unsupported original kind {kind!r}: MVP converts transformers BEiT checkpoints (kind='beit')."
        )
    model_type = original_kwargs.get("model_type", "beit")
    if model_type != "beit":
        raise ValueError(f"Expected a BEiT configuration (model_type 'beit'), got model_type {model_type!r}.")
    beit = BeitConfig.from_dict({key: value for key, value in original_kwargs.items() if key != "model_type"})
    if isinstance(beit.patch_size, (list, tuple)):
        if beit.patch_size[0] != beit.patch_size[1]:
            raise ValueError(f"MVP uses square patches; the BEiT config has patch_size {beit.patch_size}.")
        beit.patch_size = int(beit.patch_size[0])
    kwargs = {name: getattr(beit, name) for name in _SHARED_FIELDS}
    if beit.id2label is not None:
        kwargs["id2label"] = dict(beit.id2label)
        kwargs["label2id"] = dict(beit.label2id)
    if beit.problem_type is not None:
        kwargs["problem_type"] = beit.problem_type
    if original_kwargs.get("out_indices") is not None:
        kwargs["out_indices"] = list(beit.out_indices)
    kwargs["qkv_bias"] = True  # BEiT always has query/value biases
    return MVPConfig(**kwargs)


def _rename(key: str, rules: list[tuple[str, str | None]]) -> tuple[bool, str | None]:
    """Applies the first matching rule: (matched, new key or None when the key is dropped)."""
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return True, None if replacement is None else re.sub(pattern, replacement, key)
    return False, None


def _expected_encoder_shapes(config: MVPConfig, with_pooler: bool) -> dict[str, torch.Size]:
    """Parameter shapes of an MVPModel built for `config`, without allocating memory."""
    with torch.device("meta"):
        model = MVPModel(config, add_pooling_layer=with_pooler)
    return {name: tensor.shape for name, tensor in model.state_dict().items()}


def _convert(
    original_state_dict: dict[str, torch.Tensor], config: MVPConfig
) -> tuple[dict[str, torch.Tensor], list[str], list[str], list[str]]:
    """Returns (converted, unknown original keys, missing encoder keys, shape mismatches)."""
    prefixed = any(key.startswith("beit.") for key in original_state_dict)
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in original_state_dict.items():
        if prefixed and not key.startswith("beit."):
            matched, new_key = _rename(key, _HEAD_RULES)
        else:
            matched, new_key = _rename(key.removeprefix("beit."), _ENCODER_RULES)
            new_key = None if new_key is None else f"mvp.{new_key}"
        if not matched:
            unknown.append(key)
        elif new_key is not None:
            converted[new_key] = value

    with_pooler = any(key.startswith("mvp.pooler.") for key in converted)
    expected = {f"mvp.{name}": shape for name, shape in _expected_encoder_shapes(config, with_pooler).items()}
    missing = sorted(set(expected) - set(converted))
    mismatched = [
        f"{key}: checkpoint {tuple(converted[key].shape)} vs model {tuple(expected[key])}"
        for key in sorted(set(expected) & set(converted))
        if converted[key].shape != expected[key]
    ]
    unknown += sorted(key for key in converted if key.startswith("mvp.") and key not in expected)
    return converted, unknown, missing, mismatched


def _conversion_error(unknown: list[str], missing: list[str], mismatched: list[str]) -> ValueError:
    parts = []
    if unknown:
        parts.append(f"unknown keys (not part of a BEiT encoder or head for this config): {unknown}")
    if missing:
        parts.append(f"missing keys (the config expects them): {missing}")
    if mismatched:
        parts.append(f"shape mismatches: {mismatched}")
    return ValueError(
        "Cannot convert the BEiT state dict to MVP — " + "; ".join(parts) + ". Check that the config matches the "
        "checkpoint (e.g. use config_from_original on the checkpoint's config.json)."
    )


def convert_state_dict(original_state_dict: dict[str, torch.Tensor], config: MVPConfig) -> dict[str, torch.Tensor]:
    """Maps a transformers BEiT state dict (v5 or legacy layout) to MVP keys.

    Args:
        original_state_dict: State dict of a BEiT model class (`beit.`-prefixed head class or bare `BeitModel`).
        config: The MVP config of the same encoder (`config_from_original`).

    Returns:
        `{"mvp.<encoder key>": tensor, ...}` plus `head.layernorm.*` (from a BEiT MIM checkpoint) and
        `classifier.*` (from a BEiT classifier) when present.

    Raises:
        ValueError: listing unknown keys, encoder keys the config expects but the checkpoint lacks, and shape
            mismatches.
    """
    converted, unknown, missing, mismatched = _convert(original_state_dict, config)
    if unknown or missing or mismatched:
        raise _conversion_error(unknown, missing, mismatched)
    return converted


def load_beit_weights(model: MVPPreTrainedModel, beit_state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Loads BEiT weights into any MVP model in place.

    Unknown or mis-shaped keys are errors; parameters the BEiT checkpoint does not have (the MVP prediction
    projection, a [MASK] token a BEiT classifier lacked, ...) keep their initialisation and are returned.

    Args:
        model: An MVPModel, MVPForPreTraining, MVPForImageClassification or MVPBackbone.
        beit_state_dict: The BEiT state dict.

    Returns:
        Names of the model's parameters that were not in the checkpoint.
    """
    converted, unknown, _, _ = _convert(beit_state_dict, model.config)
    if isinstance(model, MVPModel):
        converted = {key.removeprefix("mvp."): value for key, value in converted.items() if key.startswith("mvp.")}
    own = model.state_dict()
    # A checkpoint part the model class has no room for (e.g. a classifier for a backbone) is not an error.
    loadable = {key: value for key, value in converted.items() if key in own}
    mismatched = [
        f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}"
        for key, value in loadable.items()
        if value.shape != own[key].shape
    ]
    if unknown or mismatched:
        raise _conversion_error(unknown, [], mismatched)
    missing, unexpected = model.load_state_dict(loadable, strict=False)
    assert not unexpected, unexpected  # `loadable` only holds the model's own keys
    if missing:
        logger.info("Parameters not in the BEiT checkpoint keep their initialisation: %s", missing)
    return list(missing)


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict", "module"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise TypeError(f"{path} does not hold a state dict (got {type(state).__name__}).")
    return state


def load_beit_checkpoint(
    path: str | Path, config_path: str | Path | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Reads a BEiT config dict and state dict from a folder or a weights file.

    Args:
        path: A `save_pretrained` folder (model.safetensors, sharded safetensors or pytorch_model.bin), or a single
            `.safetensors` / `.pth` / `.bin` file (pickles are read with `weights_only=True`).
        config_path: config.json to use; default: the one in the folder (or beside the file).

    Returns:
        (config dict, state dict).
    """
    path = Path(path)
    if path.is_dir():
        folder = path
        index = folder / "model.safetensors.index.json"
        if (folder / "model.safetensors").is_file():
            state_dict = _read_weights(folder / "model.safetensors")
        elif index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state_dict = {key: value for shard in shards for key, value in _read_weights(folder / shard).items()}
        elif (folder / "pytorch_model.bin").is_file():
            state_dict = _read_weights(folder / "pytorch_model.bin")
        else:
            raise FileNotFoundError(f"No model.safetensors or pytorch_model.bin in {folder}.")
    elif path.is_file():
        folder = path.parent
        state_dict = _read_weights(path)
    else:
        raise FileNotFoundError(f"BEiT checkpoint {str(path)!r} does not exist (pass a local folder or weights file).")
    config_file = Path(config_path) if config_path is not None else folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"No BEiT config.json at {config_file}: pass --config with the checkpoint's config.")
    return json.loads(config_file.read_text()), state_dict


def _pick_class(task: str, state_dict: dict[str, torch.Tensor]) -> type[MVPPreTrainedModel]:
    if task == "auto":
        if any(key.startswith("classifier.") for key in state_dict):
            task = "classification"
        elif any(key.startswith("lm_head.") for key in state_dict):
            task = "pretraining"
        else:
            task = "model"
    return {"model": MVPModel, "pretraining": MVPForPreTraining, "classification": MVPForImageClassification}[task]


def _image_processor_for(folder: Path) -> MVPImageProcessor:
    """MVP image processor with the BEiT folder's resolution and normalisation when it has a preprocessor config."""
    processor_file = folder / "preprocessor_config.json"
    if not processor_file.is_file():
        return MVPImageProcessor()
    saved = json.loads(processor_file.read_text())
    kwargs = {key: saved[key] for key in ("image_mean", "image_std", "do_normalize", "do_rescale") if key in saved}
    size = saved.get("size")
    if isinstance(size, dict) and "height" in size:
        kwargs["size"] = {"height": size["height"], "width": size["width"]}
    return MVPImageProcessor(**kwargs)


def verify_against_beit(model: MVPPreTrainedModel, beit_folder: str | Path, atol: float = 1e-4) -> float:
    """Runs the BEiT folder through transformers' `BeitModel` and returns the max |difference| of the encoders."""
    from transformers import BeitModel

    beit = BeitModel.from_pretrained(str(beit_folder), local_files_only=True, add_pooling_layer=False).eval()
    encoder = model if isinstance(model, MVPModel) else model.mvp
    encoder.eval()
    config = model.config
    height, width = config.grid_size
    pixel_values = torch.randn(1, config.num_channels, height * config.patch_size, width * config.patch_size)
    with torch.no_grad():
        expected = beit(pixel_values).last_hidden_state
        actual = encoder(pixel_values).last_hidden_state
    difference = (expected - actual).abs().max().item()
    if difference > atol:
        raise AssertionError(f"Converted MVP encoder differs from BeitModel by {difference:.3g} (> {atol}).")
    return difference


def convert_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    *,
    config_path: str | Path | None = None,
    task: str = "auto",
    config_overrides: dict[str, Any] | None = None,
    verify: bool = False,
    model_card: bool = True,
) -> MVPPreTrainedModel:
    """Converts a BEiT checkpoint and writes an MVP `save_pretrained` folder (weights, config, image processor and,
    with `model_card`, a README.md rendered by `hf_unified_pretrain.cards`)."""
    original_config, state_dict = load_beit_checkpoint(checkpoint, config_path)
    config = config_from_original(original_config, kind="beit")
    model_class = _pick_class(task, state_dict)
    if model_class is MVPForPreTraining and not config.use_mask_token:
        config.use_mask_token = True  # pre-training needs one; it starts from its initialisation
    for name, value in (config_overrides or {}).items():
        setattr(config, name, value)
    model = model_class(config)
    missing = load_beit_weights(model, state_dict)
    if missing:
        logger.warning("Initialised (not in the BEiT checkpoint): %s", missing)
    if verify:
        folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
        logger.warning("Max |MVP - BEiT| on a random image: %.3g", verify_against_beit(model, folder))
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    source_folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    _image_processor_for(source_folder).save_pretrained(output_dir)
    if model_card:
        from ...cards import render_model_card, save_model_card

        size = {768: "base", 1024: "large"}.get(config.hidden_size, "custom")
        card = render_model_card(
            output_dir,
            method="mvp",
            size=size,
            base_model=str(checkpoint),
            extra_limitations=[
                (
                    f"Weights converted from the BEiT checkpoint {checkpoint}: MVP released no weights; only the "
                    "encoder is BEiT's, any MVP prediction head is freshly initialised."
                )
            ],
        )
        save_model_card(card, output_dir)
    return model


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    overrides = {}
    for pair in pairs:
        name, _, raw = pair.partition("=")
        try:
            overrides[name] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[name] = raw
    return overrides


def main(argv: list[str] | None = None, *, _convert_fn: Callable = convert_checkpoint) -> None:
    """Command line: BEiT checkpoint (folder, .safetensors or .pth) → MVP `save_pretrained` folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="BEiT save_pretrained folder, or a .safetensors/.pth file")
    parser.add_argument("--output_dir", required=True, help="Folder to write the MVP checkpoint to")
    parser.add_argument("--config", default=None, help="BEiT config.json (default: the one beside the weights)")
    parser.add_argument(
        "--task",
        default="auto",
        choices=["auto", "model", "pretraining", "classification"],
        help="MVP class to save; auto = classification for a BEiT classifier, pretraining for BEiT-MIM, else model",
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="FIELD=VALUE", help="MVPConfig overrides (JSON values)"
    )
    parser.add_argument("--verify", action="store_true", help="Compare the encoder with transformers' BeitModel")
    parser.add_argument("--no_model_card", action="store_true", help="Do not write a README.md model card")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    _convert_fn(
        args.checkpoint,
        args.output_dir,
        config_path=args.config,
        task=args.task,
        config_overrides=_parse_overrides(args.set),
        verify=args.verify,
        model_card=not args.no_model_card,
    )
    logger.info("Saved the MVP checkpoint to %s", args.output_dir)


if __name__ == "__main__":
    main()
