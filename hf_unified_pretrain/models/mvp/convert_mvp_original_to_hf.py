"""Convert a transformers BEiT checkpoint into an MVP checkpoint.

MVP released no code or weights; its student is a BEiT encoder, so the natural "original" checkpoints are BEiT ones
(to start MVP pre-training from BEiT weights, or to fine-tune converted BEiT/MVP-style weights with this package).
Both BEiT key layouts are read: the transformers v5 one (`beit.layers.0.attention.q_proj...`) and the legacy v4 one
found in most Hub folders (`beit.encoder.layer.0.attention.attention.query...`).

Contract shared by every method's converter:
- `config_from_original(original_kwargs, kind="beit") -> MVPConfig` from a `BeitConfig` dict (config.json);
- `convert_state_dict(original_state_dict, config) -> dict` pure key mapping, raising `ConversionError` with the
  unknown, missing or mis-shaped keys;
- `main()` the command line (`hf_unified_pretrain.conversion.converter_main`):

    hf-unified-pretrain convert mvp --checkpoint path/to/beit-folder --output_dir mvp-from-beit \
        [--config beit_config.json] [--task auto] [--verify] [--set teacher_dim=768] [--no_model_card]

`mvp_from_beit(MVPForPreTraining, folder, teacher_dim=768)` builds any MVP class from a BEiT folder in Python.

Output keys: encoder weights under `mvp.` (loadable by every MVP class, the prefix is added/stripped by
`from_pretrained`), the BEiT-MIM final norm as `head.layernorm.*` (the norm before MVP's prediction head), a BEiT
classifier as `classifier.*`. BEiT's dVAE-token head (`lm_head.*`) has no MVP counterpart and is dropped.
"""

import argparse
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import BeitConfig

from ...conversion import ConversionError, converter_main, load_original_checkpoint
from .configuration_mvp import MVPConfig
from .modeling_mvp import MVPForImageClassification, MVPForPreTraining, MVPModel, MVPPreTrainedModel

ModelT = TypeVar("ModelT", bound=MVPPreTrainedModel)

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
    original_state_dict: Mapping[str, torch.Tensor], config: MVPConfig
) -> tuple[dict[str, torch.Tensor], ConversionError | None]:
    """Returns (converted, the error listing unknown original keys, missing encoder keys and shape mismatches)."""
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
    shapes = {
        key: (tuple(converted[key].shape), tuple(expected[key]))
        for key in sorted(set(expected) & set(converted))
        if converted[key].shape != expected[key]
    }
    unknown += sorted(key for key in converted if key.startswith("mvp.") and key not in expected)
    if not (unknown or missing or shapes):
        return converted, None
    return converted, ConversionError(
        "Cannot convert the BEiT state dict to MVP",
        unknown=unknown,
        missing=missing,
        mismatched=list(shapes),
        shapes=shapes,
        hint="Check that the config matches the checkpoint (e.g. config_from_original on its config.json).",
    )


def convert_state_dict(original_state_dict: Mapping[str, torch.Tensor], config: MVPConfig) -> dict[str, torch.Tensor]:
    """Maps a transformers BEiT state dict (v5 or legacy layout) to MVP keys.

    Args:
        original_state_dict: State dict of a BEiT model class (`beit.`-prefixed head class or bare `BeitModel`).
        config: The MVP config of the same encoder (`config_from_original`).

    Returns:
        `{"mvp.<encoder key>": tensor, ...}` plus `head.layernorm.*` (from a BEiT MIM checkpoint) and
        `classifier.*` (from a BEiT classifier) when present.

    Raises:
        ConversionError: listing unknown keys, encoder keys the config expects but the checkpoint lacks, and shape
            mismatches.
    """
    converted, error = _convert(original_state_dict, config)
    if error is not None:
        raise error
    return converted


def load_converted_weights(model: MVPPreTrainedModel, converted: Mapping[str, torch.Tensor]) -> list[str]:
    """Loads `convert_state_dict` output into any MVP class in place.

    Parts the class has no room for (a classifier for a backbone) are skipped; parameters the checkpoint lacks (the
    MVP prediction projection, a [MASK] token a BEiT classifier had not, ...) keep their initialisation.

    Returns:
        Names of the model's parameters that were not in the checkpoint.

    Raises:
        ConversionError: listing tensors whose shapes differ from the model's.
    """
    if isinstance(model, MVPModel):
        converted = {key.removeprefix("mvp."): value for key, value in converted.items() if key.startswith("mvp.")}
    own = model.state_dict()
    loadable = {key: value for key, value in converted.items() if key in own}
    shapes = {
        key: (tuple(value.shape), tuple(own[key].shape))
        for key, value in loadable.items()
        if value.shape != own[key].shape
    }
    if shapes:
        raise ConversionError("Cannot load the converted BEiT weights", mismatched=list(shapes), shapes=shapes)
    missing, unexpected = model.load_state_dict(loadable, strict=False)
    assert not unexpected, unexpected  # `loadable` only holds the model's own keys
    if missing:
        logger.info("Parameters not in the BEiT checkpoint keep their initialisation: %s", missing)
    return list(missing)


def load_beit_weights(model: MVPPreTrainedModel, beit_state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Converts a BEiT state dict and loads it into any MVP model in place (see `load_converted_weights`).

    Unknown or mis-shaped keys are errors; encoder keys the model's config expects but the checkpoint lacks are
    tolerated here (they are returned with the other parameters left at their initialisation).

    Returns:
        Names of the model's parameters that were not in the checkpoint.
    """
    converted, error = _convert(beit_state_dict, model.config)
    if error is not None and (error.unknown or error.mismatched):
        raise ConversionError(
            "Cannot convert the BEiT state dict to MVP",
            unknown=error.unknown,
            mismatched=error.mismatched,
            shapes=error.shapes,
        )
    return load_converted_weights(model, converted)


def load_beit_checkpoint(
    path: str | Path, config_path: str | Path | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Reads a BEiT config dict and state dict from a folder or a weights file.

    Args:
        path: A `save_pretrained` folder (model.safetensors, sharded safetensors or one pickle), or a single
            `.safetensors` / `.pth` / `.bin` file (pickles are read with `weights_only=True`).
        config_path: config.json to use; default: the one in the folder (or beside the file).

    Returns:
        (config dict, state dict).
    """
    path = Path(path)
    state_dict, extras = load_original_checkpoint(path)
    if config_path is None and "config" in extras:
        return extras["config"], state_dict
    config_file = Path(config_path) if config_path is not None else path.parent / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"No BEiT config.json at {config_file}: pass --config with the checkpoint's config.")
    return json.loads(config_file.read_text()), state_dict


def _pick_class(task: str, converted: Mapping[str, torch.Tensor]) -> type[MVPPreTrainedModel]:
    if task == "auto":
        if any(key.startswith("classifier.") for key in converted):
            task = "classification"
        elif any(key.startswith("head.") for key in converted):  # BeitForMaskedImageModeling's final norm
            task = "pretraining"
        else:
            task = "model"
    return {"model": MVPModel, "pretraining": MVPForPreTraining, "classification": MVPForImageClassification}[task]


def mvp_from_beit(model_class: type[ModelT], path: str | Path, **config_overrides: Any) -> ModelT:
    """Builds an MVP class from a transformers BEiT checkpoint (a folder, or weights beside a config.json).

    Args:
        model_class: `MVPModel`, `MVPForPreTraining`, `MVPForImageClassification` or `MVPBackbone`.
        path: A `save_pretrained` folder of any BEiT class (`BeitModel`, `BeitForMaskedImageModeling`,
            `BeitForImageClassification`, ...), or a `.safetensors` / `.pth` / `.bin` file inside such a folder.
        config_overrides: MVPConfig fields to set on top of the converted config (e.g. `teacher_dim=768`).

    Returns:
        The model with the BEiT encoder weights loaded; parts BEiT does not have (e.g. the MVP prediction head)
        keep their fresh initialisation.
    """
    beit_config, beit_state_dict = load_beit_checkpoint(path)
    config = config_from_original(beit_config, kind="beit")
    if issubclass(model_class, MVPForPreTraining):
        config.use_mask_token = True  # BEiT classifiers may have none; pre-training starts it from scratch
    for name, value in config_overrides.items():
        setattr(config, name, value)
    model = model_class(config)
    load_beit_weights(model, beit_state_dict)
    return model


def _processor_overrides(source: Path) -> dict[str, Any]:
    """The BEiT folder's normalisation (e.g. BEiT-v1's 0.5 mean/std) when it has a preprocessor config."""
    folder = source if source.is_dir() else source.parent
    processor_file = folder / "preprocessor_config.json"
    if not processor_file.is_file():
        return {}
    saved = json.loads(processor_file.read_text())
    return {key: saved[key] for key in ("image_mean", "image_std", "do_normalize", "do_rescale") if key in saved}


# Largest |MVP - BEiT| encoder output difference `--verify` accepts (float32 reordering noise is ~1e-6).
VERIFY_ATOL = 1e-4


def verify_against_beit(model: MVPPreTrainedModel, beit_folder: str | Path, atol: float = VERIFY_ATOL) -> float:
    """Runs the BEiT folder through transformers' `BeitModel` and returns the max |difference| of the encoders."""
    from transformers import BeitModel
    from transformers.utils import logging as transformers_logging

    # Its load report would list the folder's pooler (or a pre-training head) as unexpected: noise here, since the
    # comparison below fails on any encoder weight that did not load.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        beit = BeitModel.from_pretrained(str(beit_folder), local_files_only=True, add_pooling_layer=False).eval()
    finally:
        transformers_logging.set_verbosity(verbosity)
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


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="BEiT config.json (default: the one beside the weights)")
    parser.add_argument(
        "--task",
        default="auto",
        choices=["auto", "model", "pretraining", "classification"],
        help="MVP class to save; auto = classification for a BEiT classifier, pretraining for BEiT-MIM, else model",
    )
    parser.add_argument("--verify", action="store_true", help="Compare the encoder with transformers' BeitModel")


def _original_kwargs(args: argparse.Namespace, extras: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if args.config is not None:
        return "beit", json.loads(Path(args.config).read_text())
    if isinstance(extras.get("config"), Mapping):
        return "beit", dict(extras["config"])
    beside = Path(args.checkpoint).parent / "config.json"
    if beside.is_file():
        return "beit", json.loads(beside.read_text())
    raise FileNotFoundError(f"No BEiT config.json at {beside}: pass --config with the checkpoint's config.")


def _model_class(
    config: MVPConfig, kind: str, converted: Mapping[str, torch.Tensor], args: argparse.Namespace
) -> type:
    model_class = _pick_class(args.task, converted)
    if model_class is MVPForPreTraining:
        config.use_mask_token = True  # pre-training needs one; it starts from its initialisation
    return model_class


def _load_weights(model: MVPPreTrainedModel, converted: dict[str, torch.Tensor], args: argparse.Namespace) -> None:
    load_converted_weights(model, converted)  # logs the parameters that keep their initialisation, once
    if args.verify:
        folder = Path(args.checkpoint) if Path(args.checkpoint).is_dir() else Path(args.checkpoint).parent
        try:
            difference = verify_against_beit(model, folder, atol=VERIFY_ATOL)
        except AssertionError as error:
            raise ConversionError(
                f"--verify failed: {error} The conversion is wrong for this checkpoint; nothing was saved"
            ) from error
        logger.info(
            "Verified against transformers' BeitModel on a random image: max |MVP - BEiT| = %.3g <= tolerance %g.",
            difference,
            VERIFY_ATOL,
        )


def _card_kwargs(args: argparse.Namespace, config: MVPConfig) -> dict[str, Any]:
    return {
        "size": {768: "base", 1024: "large"}.get(config.hidden_size, "custom"),
        "base_model": str(args.checkpoint),
        "extra_limitations": [
            "MVP released no weights; only the encoder is BEiT's, any MVP prediction head is freshly initialised."
        ],
    }


def main(argv: Sequence[str] | None = None) -> MVPPreTrainedModel:
    """`hf-unified-pretrain convert mvp --checkpoint BEIT --output_dir DIR [--task T] [--verify] [--set k=v ...]`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    return converter_main(
        "mvp",
        argv,
        config_from_original,
        convert_state_dict,
        kinds=("beit",),
        description=__doc__.split("\n")[0],
        add_arguments=_add_arguments,
        original_kwargs=_original_kwargs,
        model_class=_model_class,
        load_weights=_load_weights,
        processor_overrides=lambda args, extras: _processor_overrides(Path(args.checkpoint)),
        card_kwargs=_card_kwargs,
    )


if __name__ == "__main__":
    main()
