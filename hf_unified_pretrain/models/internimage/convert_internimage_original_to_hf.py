"""Converts original InternImage checkpoints (OpenGVLab/InternImage) to `InternImageForImageClassification` /
`InternImageBackbone`.

Sources:

* the original `.pth` files (`ckpt["model"]`, keys `patch_embed.*`, `levels.{i}.*`, `conv_head.*` / `clip_projector.*`,
  `head.*`), classification (`--kind classification`) or detection/segmentation backbones (`--kind backbone`; an
  mmdet/mmseg `backbone.` prefix is stripped, decode/neck heads are ignored);
* the Hub's remote-code repositories (`OpenGVLab/internimage_*`): the same keys under a `model.` prefix.

Functions (the project's conversion convention):

* `config_from_original(original_kwargs, kind)`: the original `InternImage(...)` constructor arguments (or the
  `MODEL.INTERN_IMAGE` fields of its yaml, any case) → `InternImageConfig`;
* `convert_state_dict(original_state_dict, config, kind)`: key mapping only, raising `ConversionError` listing every
  unknown / missing / mis-shaped key;
* `main()`: `hf-unified-pretrain convert internimage --checkpoint internimage_t_1k_224.pth --output_dir out
  [--kind classification|backbone] [--set channels=64 ...]` (without stored arguments, pass the size's fields with
  `--set`, e.g. `--set channels=112 depths=[4,4,21,4] groups=[7,14,28,56] layer_scale=1e-5 post_norm=true`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ...conversion import check_converted_keys, converter_main
from .configuration_internimage import InternImageConfig

KINDS = ("classification", "backbone")

# Original constructor argument → our config field (same meaning and value).
_SAME_MEANING = {
    "channels": "channels",
    "depths": "depths",
    "groups": "groups",
    "mlp_ratio": "mlp_ratio",
    "drop_rate": "hidden_dropout_prob",
    "drop_path_rate": "drop_path_rate",
    "drop_path_type": "drop_path_type",
    "layer_scale": "layer_scale",
    "offset_scale": "offset_scale",
    "post_norm": "post_norm",
    "cls_scale": "cls_scale",
    "dw_kernel_size": "dw_kernel_size",
    "use_clip_projector": "use_clip_projector",
    "level2_post_norm": "level2_post_norm",
    "level2_post_norm_block_ids": "level2_post_norm_block_ids",
    "res_post_norm": "res_post_norm",
    "center_feature_scale": "center_feature_scale",
    "remove_center": "remove_center",
}
# Arguments that do not change the computation (core_op: CUDA vs PyTorch DCNv3 compute the same; with_cp:
# activation checkpointing, `model.gradient_checkpointing_enable()` here) or belong to the training framework.
_IGNORED = {"core_op", "with_cp", "init_cfg", "pretrained", "type", "out_indices", "num_classes", "act_layer"}
_ORIGINAL_DEFAULTS = {"act_layer": "GELU", "norm_layer": "LN"}


def config_from_original(original_kwargs: Mapping[str, Any], kind: str = "classification") -> InternImageConfig:
    """Builds the `InternImageConfig` of an original `InternImage(**original_kwargs)`.

    Args:
        original_kwargs: Constructor arguments of the original class (keys in any case, so the yaml's
            `MODEL.INTERN_IMAGE` fields work too); missing ones take the original's defaults.
        kind: "classification" (the classifier, `num_classes` → `num_labels`) or "backbone" (the det/seg backbone:
            `out_indices` → `out_features`, default all four stages).

    Returns:
        The config.
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown kind {kind!r}; choose one of {KINDS}.")
    args = {**_ORIGINAL_DEFAULTS, **{str(key).lower(): value for key, value in original_kwargs.items()}}
    unknown = sorted(set(args) - set(_SAME_MEANING) - _IGNORED - {"norm_layer"})
    if unknown:
        raise ValueError(
            f"Unknown InternImage constructor arguments {unknown}; expected some of "
            f"{sorted(set(_SAME_MEANING) | _IGNORED | {'norm_layer'})}."
        )
    if args["norm_layer"] != "LN" or args["act_layer"] != "GELU":
        raise ValueError(
            f"Only norm_layer='LN' and act_layer='GELU' (every released InternImage) are supported, got "
            f"{args['norm_layer']!r} / {args['act_layer']!r}."
        )
    fields = {ours: args[theirs] for theirs, ours in _SAME_MEANING.items() if theirs in args}
    # The original's defaults where they differ from ours.
    fields.setdefault("depths", [3, 4, 18, 5])
    fields.setdefault("groups", [3, 6, 12, 24])
    fields.setdefault("drop_path_rate", 0.2)
    if not fields.get("level2_post_norm"):
        fields.pop("level2_post_norm_block_ids", None)
    if fields.get("layer_scale") is not None and fields.get("res_post_norm"):
        # The original builds (and never uses) the res-post norms when layer-scale is on; so do its checkpoints.
        raise ValueError("res_post_norm together with layer_scale is not supported (the original ignores it).")
    if kind == "classification":
        num_classes = int(args.get("num_classes", 1000))
        if num_classes > 0:
            fields["num_labels"] = num_classes
    else:
        out_indices = args.get("out_indices", (0, 1, 2, 3))
        fields["out_features"] = [f"stage{int(index) + 1}" for index in out_indices]
    return InternImageConfig(**fields)


# Original key (after prefix stripping) → ours, without the model prefix. Order matters only for readability.
_BLOCK_RULES = (
    (r"norm1\.0\.", "norm1."),
    (r"norm2\.0\.", "norm2."),
    (r"res_post_norm1\.0\.", "res_post_norm1."),
    (r"res_post_norm2\.0\.", "res_post_norm2."),
    (r"dcn\.dw_conv\.0\.", "dcn.dw_conv."),
    (r"dcn\.dw_conv\.1\.1\.", "dcn.dw_norm."),
    (r"dcn\.center_feature_scale_proj_weight$", "dcn.center_feature_scale_proj.weight"),
    (r"dcn\.center_feature_scale_proj_bias$", "dcn.center_feature_scale_proj.bias"),
    (r"dcn\.(offset|mask|input_proj|output_proj)\.", r"dcn.\1."),
    (r"mlp\.(fc1|fc2)\.", r"mlp.\1."),
    (r"gamma1$", "layer_scale1"),
    (r"gamma2$", "layer_scale2"),
)
_BACKBONE_RULES = (
    (r"^patch_embed\.conv([12])\.", r"embeddings.conv\1."),
    (r"^patch_embed\.norm([12])\.1\.", r"embeddings.norm\1."),
    (r"^levels\.(\d+)\.norm\.0\.", r"encoder.stages.\1.norm."),
    (r"^levels\.(\d+)\.post_norms\.(\d+)\.0\.", r"encoder.stages.\1.post_norms.\2."),
    (r"^levels\.(\d+)\.downsample\.conv\.", r"encoder.stages.\1.downsample.conv."),
    (r"^levels\.(\d+)\.downsample\.norm\.1\.", r"encoder.stages.\1.downsample.norm."),
)
_HEAD_RULES = (
    (r"^conv_head\.0\.", "conv_head.0."),
    (r"^conv_head\.1\.0\.", "conv_head.1."),
    (r"^head\.", "classifier."),
    (r"^dcnv3_head_x4\.0\.", "dcnv3_head_x4."),
    (r"^dcnv3_head_x3\.", "dcnv3_head_x3."),
    (r"^clip_projector\.norm1_([qkv])\.0\.", r"clip_projector.norm_\1."),
    (r"^clip_projector\.cross_dcn\.([qkv])\.weight$", r"clip_projector.\1_proj.weight"),
    (r"^clip_projector\.cross_dcn\.([qkv])_bias$", r"clip_projector.\1_proj.bias"),
    (r"^clip_projector\.cross_dcn\.proj\.", "clip_projector.o_proj."),
    (r"^fc_norm\.0\.", "fc_norm."),
)
_BLOCK_PREFIX = re.compile(r"^levels\.(\d+)\.blocks\.(\d+)\.(.*)$")
# Keys of det/seg frameworks around the backbone (necks, decode heads) and of the classifier head, which a backbone
# conversion leaves out.
_NOT_BACKBONE = re.compile(
    r"^(neck|decode_head|auxiliary_head|rpn_head|roi_head|bbox_head|query_head|panoptic_head)\."
)
_HEAD_KEY = re.compile(r"^(conv_head|head|dcnv3_head_x[34]|clip_projector|fc_norm)\.")


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "model.", "backbone."):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _rename(key: str) -> str | None:
    block = _BLOCK_PREFIX.match(key)
    if block is not None:
        stage, layer, rest = block.groups()
        for pattern, replacement in _BLOCK_RULES:
            if re.search(pattern, rest):
                return f"encoder.stages.{stage}.layers.{layer}.{re.sub(pattern, replacement, rest)}"
        return None
    for pattern, replacement in _BACKBONE_RULES:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def _rename_head(key: str) -> str | None:
    for pattern, replacement in _HEAD_RULES:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def _infer_kind(config: InternImageConfig) -> str:
    return "backbone" if config.out_features != [config.stage_names[-1]] else "classification"


def convert_state_dict(
    original_state_dict: Mapping[str, torch.Tensor], config: InternImageConfig, kind: str | None = None
) -> dict[str, torch.Tensor]:
    """Renames an original InternImage state dict to ours (`internimage.` base prefix; heads for classification).

    Args:
        original_state_dict: Original keys, optionally under `model.` (Hub remote code), `module.` or `backbone.`.
        config: The target configuration (from `config_from_original`).
        kind: "classification" (`InternImageForImageClassification`) or "backbone" (`InternImageBackbone`; head and
            framework keys are left out). None infers it from `config.out_features`.

    Returns:
        Our state dict.

    Raises:
        ConversionError: some keys are unknown, missing or mis-shaped for the configured model (all listed).
    """
    from .modeling_internimage import InternImageBackbone, InternImageForImageClassification

    kind = kind or _infer_kind(config)
    if kind not in KINDS:
        raise ValueError(f"Unknown kind {kind!r}; choose one of {KINDS}.")
    converted: dict[str, torch.Tensor] = {}
    source_of: dict[str, str] = {}
    unmapped: list[str] = []
    for original_key, tensor in original_state_dict.items():
        key = _strip_prefix(original_key)
        if kind == "backbone" and (_NOT_BACKBONE.match(key) or _HEAD_KEY.match(key)):
            continue
        ours = _rename(key)
        if ours is not None:
            ours = f"internimage.{ours}"
        elif kind == "classification":
            ours = _rename_head(key)
        if ours is None:
            unmapped.append(original_key)
            continue
        converted[ours] = tensor
        source_of[ours] = original_key
    model_class = InternImageForImageClassification if kind == "classification" else InternImageBackbone
    with torch.device("meta"):
        expected = model_class(config).state_dict()
    check_converted_keys(
        converted,
        expected,
        unmapped=unmapped,
        source_of=source_of,
        message=f"The InternImage checkpoint does not fit the configured {model_class.__name__}",
        hint=(
            "Check --kind and the size fields (channels, depths, groups, post_norm, layer_scale, res_post_norm, "
            "center_feature_scale, level2_post_norm_block_ids, use_clip_projector, dw_kernel_size)."
        ),
    )
    return converted


def _model_class(config: InternImageConfig, kind: str, converted: Mapping[str, torch.Tensor], args: Any) -> type:
    from .modeling_internimage import InternImageBackbone, InternImageForImageClassification

    return InternImageForImageClassification if kind == "classification" else InternImageBackbone


def main(argv: Sequence[str] | None = None):
    """`hf-unified-pretrain convert internimage --checkpoint PATH --output_dir DIR [--kind K] [--set key=value ...]`."""
    return converter_main(
        "internimage",
        argv,
        config_from_original,
        convert_state_dict,
        kinds=KINDS,
        description=__doc__.split("\n\n")[0],
        model_class=_model_class,
    )


__all__ = ["KINDS", "config_from_original", "convert_state_dict", "main"]
