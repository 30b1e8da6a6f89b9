# Copyright 2025 The hf_unified_pretrain contributors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Converts checkpoints of the original iTPN code (github.com/sunsmarterjie/iTPN) to `hf_unified_pretrain` folders.

Contract shared by every method of the package:

* `config_from_original(original_kwargs, kind)`: constructor arguments of the original class -> `ITPNConfig`;
* `convert_state_dict(original_state_dict, config)`: pure key/layout mapping, raising `ConversionError` with the
  unknown, missing and mis-shaped keys;
* `main()`: the command line of `hf_unified_pretrain.conversion.converter_main`, original checkpoint (.pth read with
  `weights_only=True`, or safetensors) -> `save_pretrained` folder (+ image processor and model card):

    hf-unified-pretrain convert itpn --checkpoint itpn_base.pth --output_dir itpn-base --arch itpn_base_3324_patch16_224
    hf-unified-pretrain convert itpn --checkpoint ckpt.pth --output_dir out --kind pixel_mim \
        --original_kwargs '{"embed_dim": 512}' [--drop_keys '^mask_token$'] [--set drop_path_rate=0.1]

  Without `--arch` / `--kind`, a checkpoint whose saved `args.model` names an original builder selects it.

Kinds (original classes):

| kind | original class | our class |
| --- | --- | --- |
| `pixel_mim` | `itpn_pixel/models/models_itpn_mim.py: iTPNMaskedAutoencoder` | `ITPNForPreTraining` (pixel) |
| `clip_mim` | `itpn_clip/modeling_pretrain.py: iTPNClipDistill` | `ITPNForPreTraining` (clip) |
| `classifier` | `itpn_pixel/models/models_itpn.py: iTPN` | `ITPNForImageClassification` |
| `classifier` | `itpn_clip/modeling_finetune.py: iTPN` | `ITPNForImageClassification` |
| `fast_classifier` | `fast_itpn/modeling_finetune.py: Fast_iTPN` | `ITPNForImageClassification` |
| `seg_backbone` | `seg/backbone/iTPN.py: iTPN` (mmseg) | `ITPNBackbone` (`"seg"` layout) |
| `det_backbone` | `det/mmdet/models/backbones/iTPN_pixel.py: iTPN_pixel` (mmdet) | `ITPNBackbone` (`"det"` layout) |

Fixed buffers (`relative_position_index`) are derived by our model, not loaded; stored parameters that the originals
fill with fixed values (sin-cos position embeddings) are loaded like any weight.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ...conversion import check_converted_keys, converter_main
from .configuration_itpn import ITPNConfig
from .modeling_itpn import ITPNBackbone, ITPNForImageClassification, ITPNForPreTraining, ITPNPreTrainedModel

KINDS = ("pixel_mim", "clip_mim", "classifier", "fast_classifier", "seg_backbone", "det_backbone")

# Constructor defaults of each original class (only the arguments that matter for the architecture).
_CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "pixel_mim": {
        "img_size": 224,
        "patch_size": 16,
        "in_chans": 3,
        "fpn_dim": 256,
        "fpn_depth": 2,
        "embed_dim": 512,
        "mlp_depth": 3,
        "depth": 24,
        "num_heads": 8,
        "bridge_mlp_ratio": 3.0,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "ape": True,
        "rpe": True,
        "patch_norm": True,
        "num_outs": 3,
        "decoder_embed_dim": 512,
        "decoder_depth": 8,
        "decoder_num_heads": 16,
    },
    "clip_mim": {
        "img_size": 224,
        "patch_size": 16,
        "in_chans": 3,
        "fpn_dim": 256,
        "fpn_depth": 2,
        "embed_dim": 512,
        "mlp_depth1": 3,
        "mlp_depth2": 3,
        "depth": 24,
        "num_heads": 8,
        "bridge_mlp_ratio": 3.0,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "init_values": None,
        "ape": True,
        "rpe": True,
        "patch_norm": True,
        "teacher_dim": 512,
        "num_outs": 1,
    },
    "classifier": {
        "img_size": 224,
        "patch_size": 16,
        "in_chans": 3,
        "num_classes": 1000,
        "embed_dim": 512,
        "mlp_depth": 3,
        "depth": 24,
        "num_heads": 8,
        "bridge_mlp_ratio": 3.0,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "init_values": None,
        "ape": True,
        "rpe": True,
        "patch_norm": True,
        "num_outs": 1,
    },
    "fast_classifier": {
        "img_size": 224,
        "patch_size": 16,
        "in_chans": 3,
        "embed_dim": 512,
        "depth_stage1": 3,
        "depth_stage2": 3,
        "depth": 24,
        "num_heads": 8,
        "bridge_mlp_ratio": 3.0,
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "init_values": 0.1,
        "patch_norm": False,
        "num_classes": 1000,
        "use_mean_pooling": False,
        "cls_token": False,
        "use_abs_pos_emb": True,
        "use_rel_pos_bias": False,
        "use_shared_rel_pos_bias": False,
        "use_shared_decoupled_rel_pos_bias": False,
        "convmlp": False,
        "postnorm": False,
        "deepnorm": False,
        "subln": False,
        "swiglu": False,
        "naiveswiglu": False,
        "attn_head_dim": None,
    },
    "seg_backbone": {
        "img_size": 512,
        "patch_size": 16,
        "in_chans": 3,
        "embed_dim": 512,
        "mlp_depth1": 3,
        "mlp_depth2": 3,
        "depth": 24,
        "fpn_dim": 512,
        "num_heads": 8,
        "bridge_mlp_ratio": 3.0,
        "mlp_ratio": 4.0,
        "fpn_depth": 2,
        "init_values": None,
        "qkv_bias": True,
        "ape": True,
        "rpe": True,
        "patch_norm": True,
        "num_outs": 4,
    },
    "det_backbone": {
        "img_size": 224,
        "patch_size": 16,
        "in_chans": 3,
        "embed_dim": 512,
        "mlp_depth1": 3,
        "mlp_depth2": 3,
        "depth": 20,
        "fpn_dim": 256,
        "num_heads": 8,
        "bridge_mlp_ratio": 3.0,
        "mlp_ratio": 4.0,
        "fpn_depth": 2,
        "qkv_bias": True,
        "ape": True,
        "rpe": True,
        "patch_norm": True,
        "num_outs": -1,
    },
}

# Builders of the original repository: the constructor arguments they pass (plus the LayerNorm eps of norm_layer).
ORIGINAL_BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "itpn_base_dec512d8b": (
        "pixel_mim",
        {
            "embed_dim": 512,
            "mlp_depth": 3,
            "depth": 24,
            "num_heads": 8,
            "num_outs": 3,
            "decoder_embed_dim": 512,
            "decoder_depth": 8,
            "decoder_num_heads": 16,
            "rpe": False,
        },
    ),
    "itpn_large_dec512d8b": (
        "pixel_mim",
        {
            "embed_dim": 768,
            "mlp_depth": 2,
            "depth": 40,
            "num_heads": 12,
            "num_outs": 3,
            "decoder_embed_dim": 512,
            "decoder_depth": 8,
            "decoder_num_heads": 16,
            "rpe": False,
        },
    ),
    "clip_tpn_base_3324_patch16_224": (
        "clip_mim",
        {
            "embed_dim": 512,
            "mlp_depth1": 3,
            "mlp_depth2": 3,
            "depth": 24,
            "num_heads": 8,
            "num_outs": 3,
            "fpn_dim": 256,
            "fpn_depth": 1,
            "init_values": 0.1,
            "teacher_dim": 512,
        },
    ),
    "clip_tpn_large_2240_patch16_224": (
        "clip_mim",
        {
            "embed_dim": 768,
            "mlp_depth1": 2,
            "mlp_depth2": 2,
            "depth": 40,
            "num_heads": 12,
            "num_outs": 3,
            "fpn_dim": 256,
            "fpn_depth": 1,
            "init_values": 1e-5,
            "teacher_dim": 768,
        },
    ),
    "clip_tpn_large_2240_patch16_256": (
        "clip_mim",
        {
            "img_size": 256,
            "embed_dim": 768,
            "mlp_depth1": 2,
            "mlp_depth2": 2,
            "depth": 40,
            "num_heads": 12,
            "num_outs": 3,
            "fpn_dim": 256,
            "fpn_depth": 1,
            "init_values": 1e-5,
            "teacher_dim": 768,
        },
    ),
    "itpn_base": (
        "classifier",
        {"embed_dim": 512, "mlp_depth": 3, "depth": 24, "num_heads": 8, "rpe": True, "num_outs": 1},
    ),
    "itpn_large": (
        "classifier",
        {"embed_dim": 768, "mlp_depth": 2, "depth": 40, "num_heads": 12, "rpe": True, "num_outs": 1},
    ),
    "itpn_base_3324_patch16_224": (
        "classifier",
        {"embed_dim": 512, "mlp_depth1": 3, "mlp_depth2": 3, "depth": 24, "num_heads": 8, "num_outs": 1},
    ),
    "itpn_large_2240_patch16_224": (
        "classifier",
        {"embed_dim": 768, "mlp_depth1": 2, "mlp_depth2": 2, "depth": 40, "num_heads": 12, "num_outs": 1},
    ),
    "fast_itpn_tiny_1112_patch16_224": (
        "fast_classifier",
        {
            "embed_dim": 384,
            "depth_stage1": 1,
            "depth_stage2": 1,
            "depth": 12,
            "num_heads": 6,
            "mlp_ratio": 3.0,
            "convmlp": True,
            "naiveswiglu": True,
            "subln": True,
        },
    ),
    "fast_itpn_small_2220_patch16_224": (
        "fast_classifier",
        {
            "embed_dim": 384,
            "depth_stage1": 2,
            "depth_stage2": 2,
            "depth": 20,
            "num_heads": 6,
            "mlp_ratio": 3.0,
            "convmlp": True,
            "naiveswiglu": True,
            "subln": True,
        },
    ),
    "fast_itpn_base_3324_patch16_224": (
        "fast_classifier",
        {
            "embed_dim": 512,
            "depth_stage1": 3,
            "depth_stage2": 3,
            "depth": 24,
            "num_heads": 8,
            "mlp_ratio": 3.0,
            "convmlp": True,
            "naiveswiglu": True,
            "subln": True,
        },
    ),
    "fast_itpn_large_2240_patch16_256": (
        "fast_classifier",
        {
            "img_size": 256,
            "embed_dim": 768,
            "depth_stage1": 2,
            "depth_stage2": 2,
            "depth": 40,
            "num_heads": 12,
            "mlp_ratio": 3.0,
            "convmlp": True,
            "naiveswiglu": True,
            "subln": True,
        },
    ),
    # mmseg / mmdet configs (seg/configs/itpn/*_upernet_itpn_*, det/configs/itpn/*_itpn_*): the backbone dicts.
    "seg_upernet_itpn_base": (
        "seg_backbone",
        {
            "img_size": 512,
            "embed_dim": 512,
            "mlp_depth1": 3,
            "mlp_depth2": 3,
            "depth": 24,
            "num_heads": 8,
            "fpn_dim": 256,
            "fpn_depth": 2,
            "rpe": True,
            "num_outs": 4,
        },
    ),
    "seg_upernet_itpn_large": (
        "seg_backbone",
        {
            "img_size": 512,
            "embed_dim": 768,
            "mlp_depth1": 2,
            "mlp_depth2": 2,
            "depth": 40,
            "num_heads": 12,
            "fpn_dim": 256,
            "fpn_depth": 2,
            "rpe": True,
            "num_outs": 4,
        },
    ),
    "det_itpn_pixel_base": (
        "det_backbone",
        {
            "img_size": 224,
            "embed_dim": 512,
            "depth": 24,
            "num_heads": 8,
            "fpn_dim": 256,
            "fpn_depth": 1,
            "rpe": False,
            "num_outs": 5,
        },
    ),
}

_UNSUPPORTED_FAST = {
    "cls_token": "a [CLS] token",
    "use_rel_pos_bias": "BEiT-style relative position bias with [CLS] entries",
    "use_shared_rel_pos_bias": "a shared relative position bias",
    "use_shared_decoupled_rel_pos_bias": "a decoupled relative position bias",
    "postnorm": "post-norm blocks",
    "deepnorm": "DeepNorm blocks",
    "swiglu": "xformers' fused SwiGLU",
    "attn_head_dim": "a custom attention head dim",
}


def _square(value: Any, name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"Only square {name} is supported, got {value}.")
        return int(value[0])
    return int(value)


_NOT_A_HEAD_KEY = object()


def _rename_head_key(key: str, projections_target: str, blocks_source: str, blocks_target: str | None = None):
    """Keys shared by both pre-training heads: the per-level `decoder_embed.{level}.{LN|Linear}` projections (original
    order stride 16, 8, 4; ours 4, 8, 16) and a list of attention blocks. Returns the new key, None for a key to
    drop, or `_NOT_A_HEAD_KEY` when `key` is neither."""
    match = re.fullmatch(r"decoder_embed\.(\d)\.(\d)\.(.+)", key)
    if match:
        level = 2 - int(match.group(1))
        return f"{projections_target}.level_projections.{level}.{_LEVEL_PROJECTION[match.group(2)]}.{match.group(3)}"
    match = re.fullmatch(rf"{blocks_source}\.(\d+)\.(.+)", key)
    if match:
        rest = _rename_inside(match.group(2), _ATTENTION_BLOCK)
        return f"{blocks_target or projections_target}.layers.{match.group(1)}.{rest}" if rest is not None else None
    return _NOT_A_HEAD_KEY


def config_from_original(original_kwargs: Mapping[str, Any], kind: str = "pixel_mim") -> ITPNConfig:
    """Builds the `ITPNConfig` equivalent to an original class built with `original_kwargs`.

    Args:
        original_kwargs: Constructor arguments of the original class (`config.*` in the parity fixtures). The eps of
            its `norm_layer` may be given as `norm_layer_eps`; otherwise the builders' 1e-6 is assumed, except for the
            seg/det backbones whose configs keep `nn.LayerNorm`'s 1e-5.
        kind: One of `KINDS`, naming the original class.

    Returns:
        The config; backbone kinds get `out_features` for the original's `num_outs` levels.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown kind {kind!r}; choose one of {KINDS}.")
    args = {**_CLASS_DEFAULTS[kind], **dict(original_kwargs)}
    if args.get("qk_scale") is not None:
        raise ValueError("qk_scale is not supported (the released models use head_dim ** -0.5).")
    default_eps = 1e-5 if kind in ("seg_backbone", "det_backbone") else 1e-6
    eps = float(args.get("norm_layer_eps", args.get("layer_norm_eps", default_eps)))

    if kind == "fast_classifier":
        for name, what in _UNSUPPORTED_FAST.items():
            if args.get(name):
                raise NotImplementedError(f"Fast_iTPN with {name}={args[name]!r} ({what}) is not supported.")
        if not args["convmlp"]:
            # Its forward flattens the stage-2 output as an NCHW map, which only the C-MLP stages produce.
            raise NotImplementedError(
                "Fast_iTPN runs only with convmlp=True (the released models); got convmlp=False."
            )
        depth1, depth2 = args["depth_stage1"], args["depth_stage2"]
    elif kind == "pixel_mim" or (kind == "classifier" and "mlp_depth1" not in args):
        depth1 = depth2 = args["mlp_depth"]
    else:
        depth1, depth2 = args["mlp_depth1"], args["mlp_depth2"]

    num_outs = args.get("num_outs")
    if kind in ("pixel_mim", "clip_mim") and num_outs != 3:
        raise NotImplementedError(f"{kind} with num_outs={num_outs} is not supported (the released models use 3).")
    if kind == "seg_backbone" and num_outs not in (4, 5):
        raise NotImplementedError("The seg backbone is supported with num_outs 4 or 5 (concatenated levels).")
    if kind == "det_backbone" and num_outs not in (3, 4, 5):
        raise NotImplementedError("The det backbone is supported with num_outs 3, 4 or 5 (pyramid levels).")

    image_size = _square(args["img_size"], "img_size")
    patch_size = _square(args["patch_size"], "patch_size")
    num_tokens = (image_size // patch_size) ** 2
    fields: dict[str, Any] = {
        "image_size": image_size,
        "patch_size": patch_size,
        "num_channels": int(args["in_chans"]),
        "hidden_size": int(args["embed_dim"]),
        "stage1_depth": int(depth1),
        "stage2_depth": int(depth2),
        "num_hidden_layers": int(args["depth"]),
        "num_attention_heads": int(args["num_heads"]),
        "bridge_mlp_ratio": float(args["bridge_mlp_ratio"]),
        "mlp_ratio": float(args["mlp_ratio"]),
        "qkv_bias": bool(args["qkv_bias"]),
        "use_patch_norm": bool(args["patch_norm"]),
        "layer_scale_init_value": float(args.get("init_values") or 0.0),
        "hidden_dropout_prob": float(args.get("drop_rate", 0.0)),
        "attention_probs_dropout_prob": float(args.get("attn_drop_rate", 0.0)),
        "drop_path_rate": float(args.get("drop_path_rate", 0.0)),
        "layer_norm_eps": eps,
    }
    if kind == "fast_classifier":
        fields.update(
            use_relative_position_bias=False,
            use_absolute_position_embeddings=bool(args["use_abs_pos_emb"]),
            use_conv_mlp=bool(args["convmlp"]),
            use_swiglu=bool(args["naiveswiglu"]),
            use_sub_ln=bool(args["subln"]),
            use_mean_pooling=bool(args["use_mean_pooling"]),
        )
    else:
        fields.update(use_relative_position_bias=bool(args["rpe"]), use_absolute_position_embeddings=bool(args["ape"]))

    if kind in ("classifier", "fast_classifier"):
        fields["use_pyramid"] = False
        num_classes = int(args.get("num_classes", 0))
        fields["num_labels"] = num_classes
    else:
        fields.update(use_pyramid=True, fpn_dim=int(args["fpn_dim"]), fpn_depth=int(args["fpn_depth"]))

    if kind == "pixel_mim":
        fields.update(
            pretraining_target="pixel",
            norm_pix_loss=True,
            decoder_hidden_size=int(args["decoder_embed_dim"]),
            decoder_num_hidden_layers=int(args["decoder_depth"]),
            decoder_num_attention_heads=int(args["decoder_num_heads"]),
            decoder_mlp_ratio=float(args["mlp_ratio"]),
        )
    elif kind == "clip_mim":
        fields.update(
            pretraining_target="clip",
            teacher_dim=int(args["teacher_dim"]),
            num_masking_patches=75 if num_tokens >= 196 else max(1, round(num_tokens * 75 / 196)),
            mask_min_block_tokens=16,
            num_aux_layers=2,
            aux_layer_norm_eps=1e-5,
        )
    elif kind == "seg_backbone":
        # The mmseg backbone keeps 196 absolute positions (a 224 / 16 grid) and resizes them to the input grid.
        fields.update(backbone_layout="seg", position_embedding_grid_size=14)
        fields["out_features"] = [f"stage{i}" for i in range(1, num_outs + 1)]
    elif kind == "det_backbone":
        fields.update(backbone_layout="det")
        fields["out_features"] = [f"stage{i}" for i in range(1, num_outs + 1)]
    return ITPNConfig(**fields)


def model_class_for(config: ITPNConfig, kind: str) -> type[ITPNPreTrainedModel]:
    """Our class matching an original kind."""
    if kind in ("pixel_mim", "clip_mim"):
        return ITPNForPreTraining
    if kind in ("classifier", "fast_classifier"):
        return ITPNForImageClassification
    return ITPNBackbone


# ----------------------------------------------------------------------------------------------------------------
# Key mapping
# ----------------------------------------------------------------------------------------------------------------

_BRIDGE_BLOCK = {
    "norm2": "layernorm",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "mlp.ffn_ln": "mlp.norm",
    "gamma_2": "layer_scale",
}
_ATTENTION_BLOCK = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.qkv": "attention.qkv",
    "attn.proj": "attention.proj",
    "attn.relative_position_bias_table": "attention.relative_position_bias_table",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "mlp.ffn_ln": "mlp.norm",
    "mlp.w1": "mlp.gate_proj",
    "mlp.w2": "mlp.up_proj",
    "mlp.w3": "mlp.down_proj",
    "gamma_1": "layer_scale_1",
    "gamma_2": "layer_scale_2",
}
_MERGE = {"norm": "norm", "reduction": "reduction"}
_SPLIT = {"norm": "norm", "reduction": "reduction"}
_LEVEL_PROJECTION = {"0": "norm", "1": "dense"}


def _rename_inside(rest: str, table: Mapping[str, str]) -> str | None:
    """Maps `<sub-module>.<param>` through `table` (longest matching sub-module first); None if nothing matches."""
    for source in sorted(table, key=len, reverse=True):
        if rest == source:
            return table[source]
        if rest.startswith(source + "."):
            return table[source] + rest[len(source) :]
    return None


def _block_target(index: int, config: ITPNConfig) -> tuple[str, Mapping[str, str]]:
    """Our module path and sub-key table of the original `blocks.{index}`."""
    depth1, depth2 = config.stage1_depth, config.stage2_depth
    if index < depth1:
        return f"itpn.embeddings.stage1.{index}", _BRIDGE_BLOCK
    if index == depth1:
        return "itpn.embeddings.merge1", _MERGE
    if index < depth1 + 1 + depth2:
        return f"itpn.embeddings.stage2.{index - depth1 - 1}", _BRIDGE_BLOCK
    if index == depth1 + depth2 + 1:
        return "itpn.embeddings.merge2", _MERGE
    return f"itpn.encoder.layers.{index - depth1 - depth2 - 2}", _ATTENTION_BLOCK


def _rename(key: str, config: ITPNConfig, kind: str) -> str | None:
    """Our name for an original key (before layout changes); None when the key is unknown."""
    simple = {
        "patch_embed.proj.weight": "itpn.embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": "itpn.embeddings.patch_embeddings.projection.bias",
        "patch_embed.norm.weight": "itpn.embeddings.patch_embeddings.norm.weight",
        "patch_embed.norm.bias": "itpn.embeddings.patch_embeddings.norm.bias",
        "absolute_pos_embed": "itpn.embeddings.position_embeddings",
        "pos_embed": "itpn.embeddings.position_embeddings",
    }
    if key in simple:
        return simple[key]
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
    if match:
        prefix, table = _block_target(int(match.group(1)), config)
        rest = _rename_inside(match.group(2), table)
        return f"{prefix}.{rest}" if rest is not None else None

    if kind in ("classifier", "fast_classifier"):
        heads = {"fc_norm": "itpn.pooler.layernorm", "norm": "itpn.layernorm", "head": "classifier"}
        head, _, param = key.partition(".")
        return f"{heads[head]}.{param}" if head in heads and param else None

    # Feature pyramid (shared by pre-training models and backbones).
    pyramid = {
        "align_dim_16tofpn": "itpn.pyramid.stride16_proj",
        "align_dim_16to8": "itpn.pyramid.stride8_lateral",
        "align_dim_8to4": "itpn.pyramid.stride4_lateral",
    }
    head, _, param = key.partition(".")
    if head in pyramid:
        return f"{pyramid[head]}.{param}"
    match = re.fullmatch(r"split_(16to8|8to4)\.(.+)", key)
    if match:
        level = "stride8" if match.group(1) == "16to8" else "stride4"
        rest = _rename_inside(match.group(2), _SPLIT)
        return f"itpn.pyramid.{level}_split.{rest}" if rest is not None else None
    match = re.fullmatch(r"block_(16to8|8to4)\.(\d+)\.(.+)", key)
    if match:
        level = "stride8" if match.group(1) == "16to8" else "stride4"
        rest = _rename_inside(match.group(3), _BRIDGE_BLOCK)
        return f"itpn.pyramid.{level}_blocks.{match.group(2)}.{rest}" if rest is not None else None
    match = re.fullmatch(r"fpn_modules\.(\d)\.(.+)", key)
    if match:
        # Original order: stride 16, 8, 4; ours: 4, 8, 16.
        rest = _rename_inside(match.group(2), _BRIDGE_BLOCK)
        return f"itpn.pyramid.output_blocks.{2 - int(match.group(1))}.{rest}" if rest is not None else None

    if kind == "pixel_mim":
        renamed = _rename_head_key(key, "decoder", "decoder_blocks")
        if renamed is not _NOT_A_HEAD_KEY:
            return renamed
        decoder = {
            "mask_token": "decoder.mask_token",
            "decoder_pos_embed": "decoder.position_embeddings",
            "decoder_norm.weight": "decoder.layernorm.weight",
            "decoder_norm.bias": "decoder.layernorm.bias",
            "decoder_pred.weight": "decoder.predictor.weight",
            "decoder_pred.bias": "decoder.predictor.bias",
        }
        return decoder.get(key)

    if kind == "clip_mim":
        renamed = _rename_head_key(key, "feature_head", "cls_pt_layers", blocks_target="aux_head")
        if renamed is not _NOT_A_HEAD_KEY:
            return renamed
        heads = {
            "norm": "feature_head.layernorm",
            "lm_head": "feature_head.predictor",
            "norm_cls": "aux_head.layernorm",
            "lm_cls_head": "aux_head.predictor",
        }
        if key == "mask_token":
            return "itpn.embeddings.mask_token"
        if head in heads and param:
            return f"{heads[head]}.{param}"
    return None


def _is_derived_or_unused(key: str, config: ITPNConfig, kind: str) -> bool:
    """Keys the original stores but our model derives (index buffers) or never uses."""
    if key.endswith("relative_position_index"):
        return True
    # The original's auxiliary CLIP blocks always build rel-pos tables, used only when the model has rpe on.
    if kind == "clip_mim" and not config.use_relative_position_bias:
        return bool(re.fullmatch(r"cls_pt_layers\.\d+\.attn\.relative_position_bias_table", key))
    return False


def _convert_tensor(original_key: str, new_key: str, tensor: torch.Tensor) -> torch.Tensor:
    """Layout changes: 1x1 convolutions (C-MLP) become linear weights, 2x2 merge convolutions concatenated linears."""
    if tensor.dim() == 4 and new_key.endswith(("mlp.fc1.weight", "mlp.fc2.weight")):
        return tensor[:, :, 0, 0]
    if tensor.dim() == 4 and new_key.endswith("reduction.weight"):
        # conv weight (2C, C, kh, kw) -> linear over positions concatenated as (kh, kw) = (0,0), (1,0), (0,1), (1,1)
        out_dim = tensor.shape[0]
        return tensor.permute(0, 3, 2, 1).reshape(out_dim, -1)
    return tensor


def _merge_split_qkv(original: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
    """EVA-style attention (q/k/v projections, or a bias-free qkv with separate q/v biases) -> one biased qkv.

    The key bias is zero: it shifts every score of a query by the same amount, so softmax ignores it.

    Returns:
        The fused `<prefix>.qkv.weight` / `.qkv.bias` tensors (original naming) and the original keys they replace.
    """
    fused, consumed = {}, set()
    prefixes = {
        key.removesuffix(suffix)
        for key in original
        for suffix in (".q_proj.weight", ".q_bias")
        if key.endswith("attn" + suffix)
    }
    for prefix in sorted(prefixes):
        if f"{prefix}.q_proj.weight" in original:
            fused[f"{prefix}.qkv.weight"] = torch.cat([original[f"{prefix}.{n}_proj.weight"] for n in "qkv"], dim=0)
            consumed |= {f"{prefix}.{n}_proj.weight" for n in "qkv"}
        if f"{prefix}.q_bias" in original:
            q_bias, v_bias = original[f"{prefix}.q_bias"], original[f"{prefix}.v_bias"]
            fused[f"{prefix}.qkv.bias"] = torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])
            consumed |= {f"{prefix}.q_bias", f"{prefix}.v_bias"}
    return fused, consumed


def convert_state_dict(
    original_state_dict: Mapping[str, torch.Tensor], config: ITPNConfig, kind: str | None = None
) -> dict[str, torch.Tensor]:
    """Renames (and re-lays out) an original iTPN state dict to ours for the model class `config` describes.

    Args:
        original_state_dict: Original keys -> tensors (a `module.` prefix from DDP is removed).
        config: Usually `config_from_original(...)` of the same checkpoint.
        kind: The original class (see `KINDS`); inferred from `config` when None (pre-training models from
            `pretraining_target`, backbones from `backbone_layout`, classifiers otherwise).

    Returns:
        Our state dict, loadable with `strict=True` into `model_class_for(config, kind)(config)`.

    Raises:
        ConversionError: Listing original keys with no counterpart, our parameters the checkpoint does not provide,
            and tensors whose shapes disagree with the config.
    """
    kind = kind or _infer_kind(original_state_dict, config)
    original = {k.removeprefix("module."): v for k, v in original_state_dict.items()}
    fused, consumed = _merge_split_qkv(original)
    state = {key: tensor for key, tensor in original.items() if key not in consumed} | fused

    converted: dict[str, torch.Tensor] = {}
    source_of: dict[str, str] = {}
    unknown: list[str] = []
    for key, tensor in state.items():
        if _is_derived_or_unused(key, config, kind):
            continue
        new_key = _rename(key, config, kind)
        if new_key is None:
            unknown.append(key)
            continue
        converted[new_key] = _convert_tensor(key, new_key, tensor)
        source_of[new_key] = key

    with torch.device("meta"):
        reference = model_class_for(config, kind)(config).state_dict()
    check_converted_keys(
        converted,
        reference,
        unmapped=unknown,
        source_of=source_of,
        message=f"Cannot convert this {kind} checkpoint with the given config",
        hint="Check `kind` and the architecture arguments (depths, fpn_depth, rpe, ape, ...).",
    )
    return {key: tensor.contiguous() for key, tensor in converted.items()}


def _infer_kind(original_state_dict: Mapping[str, torch.Tensor], config: ITPNConfig) -> str:
    keys = set(original_state_dict)
    if not config.use_pyramid:
        return "fast_classifier" if config.use_conv_mlp or config.use_swiglu or config.use_sub_ln else "classifier"
    if any(k.startswith(("decoder_pred", "module.decoder_pred")) for k in keys):
        return "pixel_mim"
    if any(k.startswith(("lm_head", "module.lm_head")) for k in keys):
        return "clip_mim"
    return "seg_backbone" if config.backbone_layout == "seg" else "det_backbone"


# ----------------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------------


def drop_keys(state_dict: Mapping[str, torch.Tensor], patterns: list[str]) -> dict[str, torch.Tensor]:
    """Removes keys matching any regular expression (e.g. the pyramid leftovers in Fast-iTPN checkpoints)."""
    compiled = [re.compile(p) for p in patterns]
    return {k: v for k, v in state_dict.items() if not any(c.search(k) for c in compiled)}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--arch",
        choices=sorted(ORIGINAL_BUILDERS),
        help="Original builder whose constructor arguments to use (sets --kind too).",
    )
    parser.add_argument(
        "--original_kwargs",
        "--original-kwargs",
        default="{}",
        help="JSON object of constructor arguments overriding the builder's, e.g. '{\"img_size\": 512}'.",
    )
    parser.add_argument(
        "--drop_keys",
        "--drop-keys",
        nargs="*",
        default=[],
        help="Regular expressions of checkpoint keys to discard, e.g. the pyramid leftovers of released Fast-iTPN "
        "files: '^mask_token$' '^align_dim_16tofpn' '^fpn_modules'.",
    )
    parser.add_argument(
        "--num_labels", "--num-labels", type=int, default=None, help="Override the classifier's class count."
    )


def _original_kwargs(args: argparse.Namespace, extras: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(kind, constructor arguments) from `--arch` / `--kind`, or from the builder named by the saved `args.model`."""
    arch = args.arch
    saved_args = extras.get("args") if isinstance(extras.get("args"), Mapping) else {}
    if arch is None and args.kind is None and saved_args.get("model") in ORIGINAL_BUILDERS:
        arch = saved_args["model"]
    if arch is not None:
        kind, kwargs = ORIGINAL_BUILDERS[arch]
        kwargs = dict(kwargs)
    elif args.kind is not None:
        kind, kwargs = args.kind, {}
    else:
        raise SystemExit(
            "hf-unified-pretrain convert itpn: pass --arch (an original builder) or --kind with --original_kwargs; "
            "the checkpoint's saved args name no known builder."
        )
    kwargs.update(json.loads(args.original_kwargs))
    if args.num_labels is not None:
        kwargs["num_classes"] = args.num_labels
    return kind, kwargs


def main(argv: Sequence[str] | None = None) -> ITPNPreTrainedModel:
    """`hf-unified-pretrain convert itpn --checkpoint PATH --output_dir DIR [--arch A | --kind K] ...`."""
    return converter_main(
        "itpn",
        argv,
        config_from_original,
        convert_state_dict,
        kinds=KINDS,
        description=__doc__.split("\n\n")[0],
        add_arguments=_add_arguments,
        original_kwargs=_original_kwargs,
        prepare_state_dict=lambda state_dict, args: drop_keys(state_dict, args.drop_keys),
        model_class=lambda config, kind, converted, args: model_class_for(config, kind),
        card_kwargs=lambda args, config: {"size": args.arch or args.kind or "custom"},
    )


if __name__ == "__main__":
    main()
