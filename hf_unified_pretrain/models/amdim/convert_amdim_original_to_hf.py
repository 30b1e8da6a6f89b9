# Copyright 2026 The hf_unified_pretrain Authors. Licensed under the Apache License, Version 2.0.
"""Convert an original AMDIM checkpoint (Philip-Bachman/amdim-public `Checkpointer`) to our AMDIM classes.

Original checkpoints are `{"model": state_dict, "hyperparams": {ndf, n_classes, n_rkhs, tclip, n_depth,
encoder_size, use_bn}, "cursor": {...}}`. The encoder sits behind `nn.DataParallel` (`encoder.module.` prefix); the
NCE module holds a constant uint8 `masks_r5` (one-hot 5x5 location masks, checked and dropped); batch norms that
the original builds but never applies (`use_bn=False`) carry untrained default values and are dropped.

    hf-unified-pretrain convert amdim --checkpoint amdim_ndf256_rkhs2048_rd10.pth --output_dir amdim-medium
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ...conversion import ConversionError, converter_main
from .configuration_amdim import AMDIMConfig
from .image_processing_amdim import CIFAR10_MEAN, CIFAR10_STD

KINDS = ("pretraining", "model", "classifier")


def config_from_original(original_kwargs: Mapping[str, Any], kind: str = "pretraining") -> AMDIMConfig:
    """Our config from the original `Model(ndf, n_classes, n_rkhs, tclip, n_depth, encoder_size, use_bn)` arguments.

    Args:
        original_kwargs: The checkpoint's `hyperparams` (keys may carry a `hyperparams.` prefix, as in the parity
            fixtures' JSON).
        kind: "pretraining" (`AMDIMForPreTraining`), "model" (`AMDIMModel`) or "classifier"
            (`AMDIMForImageClassification` with the MLP evaluation head).
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown AMDIM kind {kind!r}; choose one of {KINDS}.")
    kwargs = {key.removeprefix("hyperparams."): value for key, value in original_kwargs.items()}
    required = ("ndf", "n_rkhs", "encoder_size")
    absent = [key for key in required if key not in kwargs]
    if absent:
        # `--set` cannot fill them in: it edits the converted config, which needs these to be built at all.
        raise ConversionError(
            f"The original hyperparameters lack {absent} (found: {sorted(kwargs) or 'none'}). The original training "
            "script stores them in the checkpoint as `hyperparams`; for a bare state dict, save it again with the "
            "values of the run that trained it, e.g. `torch.save({'model': state_dict, 'hyperparams': {'ndf': 128, "
            "'n_rkhs': 1024, 'n_depth': 3, 'encoder_size': 128, 'use_bn': False}}, 'amdim.pth')`, and convert that "
            "file"
        )
    num_classes = int(kwargs.get("n_classes", 0) or 0)
    return AMDIMConfig(
        image_size=int(kwargs["encoder_size"]),
        ndf=int(kwargs["ndf"]),
        n_rkhs=int(kwargs["n_rkhs"]),
        n_depth=int(kwargs.get("n_depth", 3)),
        tclip=float(kwargs.get("tclip", 20.0)),
        use_bn=bool(kwargs.get("use_bn", False)),
        num_labels=num_classes if num_classes > 0 else 2,
        use_online_classifiers=num_classes > 0,
        classifier_type="mlp",
        # The original's NCHW convolutions: converted weights reproduce its outputs to float32 rounding (NHWC differs
        # by ~2e-5).
        channels_last=False,
    )


def _unit_key(rest: str, use_bn: bool) -> str | None:
    """Maps the tail of a ConvResNxN key; None = expected and dropped (an unused batch norm)."""
    if rest.startswith(("conv1.", "conv2.")):
        return rest
    if rest.startswith("bn1.bn."):
        return "norm." + rest.removeprefix("bn1.bn.") if use_bn else None
    raise KeyError(rest)


def _expected_r5_masks() -> torch.Tensor:
    masks = torch.zeros(25, 1, 5, 5, dtype=torch.uint8)
    masks.view(25, 25)[torch.arange(25), torch.arange(25)] = 1
    return masks


def convert_state_dict(
    original_state_dict: Mapping[str, torch.Tensor], config: AMDIMConfig, kind: str = "pretraining"
) -> dict[str, torch.Tensor]:
    """Maps original keys to the keys of the kind's class (pure renaming; tensors are not modified).

    Args:
        original_state_dict: The original `Model.state_dict()` (the checkpoint's `model` entry).
        config: From `config_from_original`.
        kind: "pretraining" (`AMDIMForPreTraining`: everything), "model" (`AMDIMModel`: the encoder and the local
            embedding heads) or "classifier" (`AMDIMForImageClassification`: the encoder and the MLP head).

    Raises:
        ConversionError: unknown keys, listed by name, or a `masks_r5` that is not the original's one-hot masks.
    """
    specs = config.layer_specs
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in original_state_dict.items():
        target = None
        if key == "g2l_loss.masks_r5":
            # A constant of the original's NCE module: checked, then dropped (we index the locations instead).
            if tuple(tensor.shape) != (25, 1, 5, 5) or not torch.equal(tensor.to(torch.uint8), _expected_r5_masks()):
                raise ConversionError(
                    "g2l_loss.masks_r5 is not the original's one-hot 5x5 location masks", unknown=[key]
                )
            continue
        try:
            encoder_key = re.sub(r"^encoder\.(module\.)?", "", key) if key.startswith("encoder.") else None
            if encoder_key is not None and encoder_key.startswith("layer_list."):
                index_text, rest = encoder_key.removeprefix("layer_list.").split(".", 1)
                index = int(index_text)
                layer_kind = specs[index][0]
                prefix = f"amdim.encoder.layers.{index}."
                if layer_kind == "conv":
                    if not rest.startswith("conv."):
                        raise KeyError(rest)
                    target = prefix + rest
                elif layer_kind == "unit":
                    tail = _unit_key(rest, config.use_bn)
                    target = prefix + tail if tail is not None else None
                elif layer_kind == "block":
                    match = re.fullmatch(r"layer_list\.(\d+)\.(.+)", rest)
                    if match is None or int(match.group(1)) >= config.n_depth:
                        raise KeyError(rest)
                    tail = _unit_key(match.group(2), config.use_bn)
                    target = f"{prefix}units.{match.group(1)}.{tail}" if tail is not None else None
                else:
                    if not rest.startswith("bn."):
                        raise KeyError(rest)
                    target = prefix + rest.removeprefix("bn.") if specs[index][2] or config.use_bn else None
            elif encoder_key is not None and encoder_key.startswith(("rkhs_block_5.", "rkhs_block_7.")):
                block, rest = encoder_key.split(".", 1)
                prefix = f"amdim.embed_{block[-1]}."
                if rest.startswith(("conv1.", "conv2.", "shortcut.")):
                    target = prefix + rest
                elif rest.startswith("bn_out.bn."):
                    target = prefix + "norm_out." + rest.removeprefix("bn_out.bn.")
                elif rest.startswith("bn_hid.bn."):
                    target = prefix + "norm_hidden." + rest.removeprefix("bn_hid.bn.") if config.use_bn else None
                else:
                    raise KeyError(rest)
            elif key.startswith("evaluator.block_glb_mlp.block_forward."):
                layer, rest = key.removeprefix("evaluator.block_glb_mlp.block_forward.").split(".", 1)
                name = {"2": "fc1", "3": "norm", "6": "fc"}[layer]
                target = f"mlp_classifier.{name}.{rest}"
            elif key.startswith("evaluator.block_glb_lin.block_forward.2."):
                target = "linear_classifier.fc." + key.removeprefix("evaluator.block_glb_lin.block_forward.2.")
            else:
                raise KeyError(key)
        except (KeyError, IndexError, ValueError):
            unknown.append(key)
            continue
        if target is not None:
            converted[target] = tensor
    if unknown:
        raise ConversionError(
            f"The original checkpoint does not fit an AMDIM Model with a {config.image_size}-px encoder, n_depth "
            f"{config.n_depth} and use_bn {config.use_bn}",
            unknown=unknown,
            hint="Check the checkpoint's hyperparams (encoder_size, n_depth, use_bn) or pass them with --set.",
        )
    return _restrict_to_kind(converted, kind)


def _restrict_to_kind(converted: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    if kind == "pretraining":
        return dict(converted)
    if kind == "model":
        return {key.removeprefix("amdim."): value for key, value in converted.items() if key.startswith("amdim.")}
    if kind == "classifier":
        return {
            key: value
            for key, value in converted.items()
            if key.startswith("mlp_classifier.") or (key.startswith("amdim.") and ".embed_" not in key)
        }
    raise ValueError(f"Unknown AMDIM kind {kind!r}; choose one of {KINDS}.")


def _model_class(config: AMDIMConfig, kind: str, converted, args) -> type:
    from . import modeling_amdim

    return {
        "pretraining": modeling_amdim.AMDIMForPreTraining,
        "model": modeling_amdim.AMDIMModel,
        "classifier": modeling_amdim.AMDIMForImageClassification,
    }[kind]


def _processor_overrides(args, extras) -> dict[str, Any]:
    # The original's test-time normalisation of each encoder size (datasets.py).
    image_size = int(extras.get("hyperparams", {}).get("encoder_size", 128))
    if image_size == 32:
        return {"do_center_crop": False, "image_mean": list(CIFAR10_MEAN), "image_std": list(CIFAR10_STD)}
    if image_size == 64:
        return {"image_mean": [0.43, 0.42, 0.39], "image_std": [0.27, 0.26, 0.27]}
    return {}


def main(argv: list[str] | None = None):
    """`hf-unified-pretrain convert amdim --checkpoint PATH --output_dir DIR [--kind K] [--set key=value ...]`."""
    return converter_main(
        "amdim",
        argv,
        config_from_original,
        convert_state_dict,
        kinds=KINDS,
        model_class=_model_class,
        processor_overrides=_processor_overrides,
    )


if __name__ == "__main__":
    main()
