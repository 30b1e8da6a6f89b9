"""The conversion convention shared by every method's `models/<m>/convert_<m>_original_to_hf.py`.

Each converter module exposes
- `config_from_original(original_kwargs: dict, kind: str = ...) -> XConfig`: the original class' constructor
  arguments (or saved config) to our config;
- `convert_state_dict(original_state_dict, config) -> dict`: pure key/layout mapping, raising `ConversionError`
  (via `check_converted_keys`) with the unknown, missing and mis-shaped keys by name;
- `main(argv=None)`: `converter_main(...)`, i.e. the one command line

    hf-unified-pretrain convert <method> --checkpoint PATH --output_dir DIR [--kind K] [--set key=value ...]

  (plus the method's own flags), which reads the checkpoint with `load_original_checkpoint`, converts it, loads it
  into our model and writes a `save_pretrained` folder with the image processor sized to the config
  (`registry.image_processor_for`) and a model card (unless `--no_model_card`).
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

# Entries that wrap the state dict in training checkpoints, unwrapped in this order (repeatedly).
STATE_DICT_WRAPPERS = ("model", "module", "state_dict", "model_state")


class ConversionError(ValueError):
    """A checkpoint does not fit the configured model.

    Attributes:
        unknown: Checkpoint keys with no place in the model (original names where known).
        missing: Model parameters the checkpoint does not provide.
        mismatched: Keys whose tensor shape differs between checkpoint and model.
        shapes: `{key: (checkpoint shape, model shape)}` for `mismatched`.
    """

    def __init__(
        self,
        message: str = "The checkpoint does not match the configured model",
        *,
        unknown: Sequence[str] = (),
        missing: Sequence[str] = (),
        mismatched: Sequence[str] = (),
        shapes: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
        hint: str | None = None,
    ) -> None:
        self.unknown = sorted(unknown)
        self.missing = sorted(missing)
        self.mismatched = sorted(mismatched)
        self.shapes = dict(shapes or {})
        parts = []
        if self.unknown:
            parts.append(f"unknown keys (no counterpart in the model): {self.unknown}")
        if self.missing:
            parts.append(f"missing keys (the model expects them): {self.missing}")
        if self.mismatched:
            listed = [
                f"{key}: checkpoint {self.shapes[key][0]} vs model {self.shapes[key][1]}" for key in self.mismatched
            ]
            parts.append(f"shape mismatches: {listed}")
        text = message + (": " + "; ".join(parts) if parts else "") + "."
        if hint:
            text += " " + hint
        super().__init__(text)


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


def check_converted_keys(
    converted: Mapping[str, Any],
    model_state: Mapping[str, Any],
    *,
    unmapped: Sequence[str] = (),
    allow_missing: Sequence[str] = (),
    source_of: Mapping[str, str] | None = None,
    message: str = "Cannot load the converted checkpoint into the configured model",
    hint: str | None = "Check `--kind` and the architecture settings (config_from_original's arguments, --set).",
) -> None:
    """Raises `ConversionError` unless `converted` fills `model_state` exactly (same keys, same shapes).

    Args:
        converted: Our key -> tensor, as the converter produced it.
        model_state: The model's `state_dict()` (meta tensors are fine) or `{key: shape}`.
        unmapped: Original keys the converter found no rule for (reported as unknown).
        allow_missing: Model keys the checkpoint may lack (they keep their initialisation).
        source_of: Our key -> original key, so unknown keys are reported by their original names too.
        message: First sentence of the error.
        hint: What to check, appended to the error.
    """
    source_of = source_of or {}
    unknown = list(unmapped) + [
        f"{source_of[key]} (as {key})" if key in source_of else key for key in converted if key not in model_state
    ]
    missing = [key for key in model_state if key not in converted and key not in set(allow_missing)]
    shapes = {
        key: (_shape(converted[key]), _shape(model_state[key]))
        for key in converted
        if key in model_state and _shape(converted[key]) != _shape(model_state[key])
    }
    if unknown or missing or shapes:
        raise ConversionError(
            message, unknown=unknown, missing=missing, mismatched=list(shapes), shapes=shapes, hint=hint
        )


# ----------------------------------------------------------------------------------------------------------------
# Reading original checkpoints
# ----------------------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Namespaces (argparse `args` saved by training scripts) as dicts."""
    return vars(value) if isinstance(value, argparse.Namespace) else value


def _torch_load(path: Path) -> Any:
    # Training scripts often save their argparse `args`; a Namespace is a plain attribute bag, safe to rebuild.
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises UnpicklingError / RuntimeError variants
            raise ValueError(
                f"Cannot read {path} with torch.load(weights_only=True): {error}. Only tensors, containers and "
                "argparse Namespaces are read; re-save the checkpoint's state dict (e.g. as safetensors) first."
            ) from error


def _read_weights(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata, names = handle.metadata() or {}, handle.keys()
            return {name: handle.get_tensor(name) for name in names}, ({"metadata": metadata} if metadata else {})
    checkpoint = _torch_load(path)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"{path} holds a {type(checkpoint).__name__}, not a state dict or a dict wrapping one.")
    extras: dict[str, Any] = {}
    while True:
        wrapper = next((key for key in STATE_DICT_WRAPPERS if isinstance(checkpoint.get(key), Mapping)), None)
        if wrapper is None:
            break
        extras.update({key: _plain(value) for key, value in checkpoint.items() if key != wrapper})
        checkpoint = checkpoint[wrapper]
    state = {key: value for key, value in checkpoint.items() if isinstance(value, torch.Tensor)}
    extras.update({key: _plain(value) for key, value in checkpoint.items() if not isinstance(value, torch.Tensor)})
    if not state:
        raise ValueError(
            f"{path} holds no tensors, neither at the top level nor under {', '.join(STATE_DICT_WRAPPERS)} "
            f"(top-level entries: {sorted(checkpoint)})."
        )
    return state, extras


def _read_folder(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        state, extras = _read_weights(folder / "model.safetensors")
    elif index.is_file():
        state, extras = {}, {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            shard_state, shard_extras = _read_weights(folder / shard)
            state.update(shard_state)
            extras.update(shard_extras)
    else:
        candidates = sorted([*folder.glob("*.bin"), *folder.glob("*.pth"), *folder.glob("*.pt")])
        if len(candidates) != 1:
            raise FileNotFoundError(
                f"{folder} has no model.safetensors (or shards) and not exactly one .bin/.pth/.pt file "
                f"(found {[path.name for path in candidates]}): pass the weights file itself."
            )
        state, extras = _read_weights(candidates[0])
    if (folder / "config.json").is_file():
        extras["config"] = json.loads((folder / "config.json").read_text())
    return state, extras


def load_original_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Reads an original checkpoint into (state dict, non-tensor entries).

    Args:
        path: A `.safetensors` file, a `.pth` / `.pt` / `.bin` pickle (read with `weights_only=True`; argparse
            Namespaces are allowed), or a `save_pretrained`-style folder (safetensors, shards or one pickle, plus
            its `config.json`).

    Returns:
        The state dict, unwrapped from `model` / `module` / `state_dict` / `model_state` entries (a `module.` prefix
        carried by every key, as DDP saves it, is removed), and the remaining entries: e.g. `args` / `hyperparams`
        (Namespaces become dicts), `epoch`, safetensors `metadata`, and a folder's `config` (its config.json).

    Raises:
        FileNotFoundError: The path does not exist (or a folder holds no weights).
        ValueError: The file cannot be read safely or holds no tensors.
        TypeError: The file holds something other than a dict.
    """
    path = Path(path)
    if path.is_dir():
        state, extras = _read_folder(path)
    elif path.is_file():
        state, extras = _read_weights(path)
    else:
        raise FileNotFoundError(f"Checkpoint {str(path)!r} does not exist (pass a local file or folder).")
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state, extras


# ----------------------------------------------------------------------------------------------------------------
# Config overrides (`--set key=value`)
# ----------------------------------------------------------------------------------------------------------------


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`["key=value", ...]` -> dict; values are JSON (`3`, `0.5`, `true`, `null`, `[1, 2]`) or else strings."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        name, separator, raw = pair.partition("=")
        if not separator or not name:
            raise ValueError(f"--set expects key=value, got {pair!r}.")
        try:
            overrides[name] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[name] = raw
    return overrides


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """Sets config fields (unknown names are an error naming close matches) and re-validates the config."""
    for name, value in overrides.items():
        if not hasattr(config, name):
            close = difflib.get_close_matches(name, [key for key in vars(config) if not key.startswith("_")], n=3)
            suggestion = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"{type(config).__name__} has no field {name!r}.{suggestion}")
        setattr(config, name, value)
    if overrides and hasattr(config, "validate"):
        config.validate()
    return config


# ----------------------------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------------------------


def _default_original_kwargs(args: argparse.Namespace, extras: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments stored in the checkpoint: a folder's config.json, else `hyperparams` / `args`."""
    for key in ("config", "hyperparams", "args"):
        if isinstance(extras.get(key), Mapping):
            return dict(extras[key])
    return {}


def _strict_load(model: Any, converted: Mapping[str, torch.Tensor], args: argparse.Namespace) -> None:
    check_converted_keys(converted, model.state_dict())
    model.load_state_dict(dict(converted), strict=True)


def converter_main(
    method: str,
    argv: Sequence[str] | None,
    config_from_original: Callable[..., Any],
    convert_state_dict: Callable[..., dict[str, torch.Tensor]],
    kinds: Sequence[str] = (),
    *,
    description: str | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    original_kwargs: Callable[[argparse.Namespace, Mapping[str, Any]], tuple[str | None, dict[str, Any]]]
    | None = None,
    prepare_state_dict: Callable[[dict[str, torch.Tensor], argparse.Namespace], dict[str, torch.Tensor]] | None = None,
    model_class: Callable[[Any, str, Mapping[str, torch.Tensor], argparse.Namespace], type] | None = None,
    load_weights: Callable[[Any, dict[str, torch.Tensor], argparse.Namespace], None] | None = None,
    processor_overrides: Callable[[argparse.Namespace, Mapping[str, Any]], dict[str, Any]] | None = None,
    card_kwargs: Callable[[argparse.Namespace, Any], dict[str, Any]] | None = None,
) -> Any:
    """The one conversion command line: `convert <method> --checkpoint PATH --output_dir DIR [--kind K] [--set ...]`.

    Steps: read the checkpoint (`load_original_checkpoint`), build the config (`config_from_original` from the
    checkpoint's stored arguments or the method's `original_kwargs` hook, then `--set` overrides), convert the
    state dict, load it into the model class, and write `save_pretrained` output, the image processor sized to the
    config and (unless `--no_model_card`) a model card.

    Args:
        method: Registry name of the method (program name, image processor and card data).
        argv: Arguments (default `sys.argv[1:]`).
        config_from_original: `(original_kwargs, kind) -> config`.
        convert_state_dict: `(state_dict, config) -> state dict`; also given `kind=` when it takes that parameter.
        kinds: Original classes `--kind` accepts (the first is the default).
        description: Help text (default: the method's).
        add_arguments: Adds the method's own flags to the parser.
        original_kwargs: `(args, extras) -> (kind or None, kwargs)`, e.g. from an `--arch` shortcut or detected
            from the checkpoint (an explicit `--kind` wins); default: the checkpoint's `config` / `hyperparams` /
            `args` entry.
        prepare_state_dict: Edits the original state dict before conversion (e.g. dropping keys).
        model_class: `(config, kind, converted, args) -> class` to build; may adjust `config` for that class.
            Default: the registry's pre-training class of the method (its bare model class when it has none).
        load_weights: `(model, converted, args)`, default strict (every key, every shape, via `check_converted_keys`).
        processor_overrides: `(args, extras) -> dict` of image-processor attributes (e.g. the original mean/std).
        card_kwargs: `(args, config) -> dict` of extra `render_model_card` arguments (e.g. `size`).

    Returns:
        The converted model (eval mode).
    """
    from .models.registry import get_method, image_processor_for

    entry = get_method(method)
    parser = argparse.ArgumentParser(
        prog=f"hf-unified-pretrain convert {method}",
        description=description or f"Converts an original {entry.card.name if entry.card else method} checkpoint.",
    )
    parser.add_argument(
        "--checkpoint", required=True, help="Original checkpoint: .safetensors, .pth/.pt/.bin, or a folder"
    )
    parser.add_argument("--output_dir", required=True, help="Folder for the save_pretrained output")
    if kinds:
        parser.add_argument("--kind", choices=list(kinds), help=f"Original class (default: {kinds[0]})")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="Config overrides (JSON values)")
    parser.add_argument("--no_model_card", action="store_true", help="Do not write a README.md model card")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    kind_flag = getattr(args, "kind", None)

    state_dict, extras = load_original_checkpoint(args.checkpoint)
    if original_kwargs is not None:
        hook_kind, kwargs = original_kwargs(args, extras)
    else:
        hook_kind, kwargs = None, _default_original_kwargs(args, extras)
    kind = kind_flag or hook_kind or (kinds[0] if kinds else None)  # an explicit --kind wins over detection
    config = config_from_original(kwargs, kind) if kind is not None else config_from_original(kwargs)
    if prepare_state_dict is not None:
        state_dict = prepare_state_dict(state_dict, args)

    try:
        overrides = parse_overrides(args.set)
    except ValueError as error:
        parser.error(str(error))
    takes_kind = "kind" in inspect.signature(convert_state_dict).parameters
    apply_overrides(config, overrides)
    converted = (
        convert_state_dict(state_dict, config, kind=kind) if takes_kind else convert_state_dict(state_dict, config)
    )
    default_role = "pretraining" if entry.pretraining is not None else "model"
    cls = model_class(config, kind, converted, args) if model_class is not None else entry.load(default_role)
    model = cls(config)
    (load_weights or _strict_load)(model, converted, args)
    model.eval()

    output_dir = Path(args.output_dir)
    model.save_pretrained(output_dir)
    processor_kwargs = processor_overrides(args, extras) if processor_overrides is not None else {}
    image_processor_for(config, **processor_kwargs).save_pretrained(output_dir)
    if not args.no_model_card and entry.card is not None:
        from .cards import render_model_card, save_model_card

        card_args = {
            "size": kind or "custom",
            "base_model": None,
            **(card_kwargs(args, config) if card_kwargs else {}),
        }
        limitations = [f"Weights converted from the original checkpoint `{Path(args.checkpoint).name}`."]
        card_args["extra_limitations"] = limitations + list(card_args.get("extra_limitations", []))
        save_model_card(render_model_card(output_dir, method=method, **card_args), output_dir)
    print(f"Wrote {type(model).__name__} ({model.num_parameters():,} parameters) to {output_dir}")
    return model


__all__ = [
    "STATE_DICT_WRAPPERS",
    "ConversionError",
    "apply_overrides",
    "check_converted_keys",
    "converter_main",
    "load_original_checkpoint",
    "parse_overrides",
]
