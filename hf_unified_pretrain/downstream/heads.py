"""Detection and segmentation heads from transformers around our pretrained backbones, in one call.

transformers 5.23 builds a head's backbone from its config only (random init: `use_pretrained_backbone` is ignored,
`backbone=<local dir>` fails), so a fine-tune must copy the pretrained backbone weights in explicitly. These helpers
do that for any registered backbone, ours included, reaching models only through configs and Auto classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from torch import nn
from transformers import (
    AutoBackbone,
    AutoConfig,
    DeformableDetrConfig,
    DeformableDetrForObjectDetection,
    DetrConfig,
    DetrForObjectDetection,
    Mask2FormerConfig,
    Mask2FormerForUniversalSegmentation,
    PreTrainedConfig,
    PreTrainedModel,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)
from transformers.backbone_utils import BackboneMixin

# head name -> (config class, model class, keyword that carries the number of feature levels, if any)
HEADS: dict[str, tuple[type[PreTrainedConfig], type[PreTrainedModel]]] = {
    "upernet": (UperNetConfig, UperNetForSemanticSegmentation),
    "mask2former": (Mask2FormerConfig, Mask2FormerForUniversalSegmentation),
    "detr": (DetrConfig, DetrForObjectDetection),
    "deformable_detr": (DeformableDetrConfig, DeformableDetrForObjectDetection),
}


def min_feature_maps(head: str, head_kwargs: dict | None = None) -> int:
    """How many backbone feature maps (`out_features`) a head reads.

    UperNet's auxiliary FCN head (on unless `use_auxiliary_head=False`) reads the third map; Mask2Former's pixel
    decoder attends over three scales; DETR-style heads take any number (Deformable-DETR one level per map).
    """
    if head == "upernet":
        return 3 if (head_kwargs or {}).get("use_auxiliary_head", True) else 1
    if head == "mask2former":
        return 3
    return 1


def _check_feature_maps(head: str, backbone_config: PreTrainedConfig, head_kwargs: dict) -> None:
    """Raises ValueError naming the head's need and out_features that satisfy it when the backbone gives too few."""
    need = min_feature_maps(head, head_kwargs)
    chosen = list(backbone_config.out_features)
    if len(chosen) >= need:
        return
    stages = [name for name in backbone_config.stage_names if name != "stem"]
    if len(stages) < need:
        stages = list(backbone_config.stage_names)
    if len(stages) < need:
        raise ValueError(
            f"The {head!r} head needs at least {need} feature maps but this {backbone_config.model_type!r} backbone "
            f"has only {len(stages)} stages ({backbone_config.stage_names}): use a deeper backbone or another head."
        )
    why = " (its auxiliary head reads the third; or pass use_auxiliary_head=False)" if head == "upernet" else ""
    raise ValueError(
        f"The {head!r} head needs at least {need} backbone feature maps{why}, but out_features is {chosen}. Fix: pass "
        f"out_features with {need} or more of {backbone_config.stage_names}, e.g. out_features={stages[:need]}."
    )


@dataclass
class BackboneLoadReport:
    """What `load_pretrained_backbone` copied: parameter count and the head's backbone module path."""

    module_path: str
    num_tensors: int


def _check_pretrained_folder(pretrained_path: str | PathLike) -> None:
    """Raises FileNotFoundError unless `pretrained_path` is a local `save_pretrained` folder with a config.json."""
    folder = Path(pretrained_path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Pretrained folder {str(folder)!r} does not exist: pass the local folder written by save_pretrained "
            "(config.json + model.safetensors), e.g. a run script's --output_dir or a converter's output."
        )
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} has no config.json: it is not a save_pretrained folder (a Trainer checkpoint-<step> "
            "folder also works)."
        )


def backbone_config_from_pretrained(
    pretrained_path: str | PathLike, out_features: list[str] | None = None, **overrides
) -> PreTrainedConfig:
    """Reads the config of a saved model (any of our classes) and selects the backbone's output stages.

    Args:
        pretrained_path: Local folder written by `save_pretrained` (Model, ForPreTraining, Backbone, ...).
        out_features: Stage names to return (see `config.stage_names`); None keeps the config's choice.
        overrides: Other config fields to change (e.g. `image_size`).

    Returns:
        The config, with `out_features` set.
    """
    _check_pretrained_folder(pretrained_path)
    config = AutoConfig.from_pretrained(pretrained_path, **overrides)
    if not hasattr(config, "stage_names"):
        raise ValueError(
            f"The model in {pretrained_path} ({type(config).__name__}) has no backbone stages: use a checkpoint of a "
            "model type that registers a Backbone class."
        )
    if out_features is not None:
        config.out_features = out_features
    return config


def _find_backbone_module(head_model: nn.Module) -> tuple[str, nn.Module]:
    for name, module in head_model.named_modules():
        if isinstance(module, BackboneMixin):
            return name, module
    raise ValueError(f"{type(head_model).__name__} holds no transformers backbone (no BackboneMixin module found).")


def load_pretrained_backbone(
    head_model: nn.Module, pretrained_path: str | PathLike, *, allow_missing: bool = False
) -> BackboneLoadReport:
    """Copies pretrained backbone weights into the backbone of a head model (UperNet, Mask2Former, DETR, ...).

    The weights are read through the backbone class of the saved config, so the checkpoint may be of any class
    sharing the backbone's base model (its `base_model_prefix` is stripped, heads and decoders are dropped).

    Args:
        head_model: A head model built from a config whose `backbone_config` is the saved model's type.
        pretrained_path: Local folder written by `save_pretrained`.
        allow_missing: Accept backbone weights absent from the checkpoint (they keep their fresh initialisation);
            by default that is an error, because a silently half-initialised backbone wastes a fine-tune.

    Returns:
        Where the backbone sits in the head and how many tensors were copied.
    """
    _check_pretrained_folder(pretrained_path)
    module_path, backbone = _find_backbone_module(head_model)
    backbone_class = AutoBackbone._model_mapping[type(backbone.config)]
    pretrained, loading_info = backbone_class.from_pretrained(
        pretrained_path, config=backbone.config, output_loading_info=True
    )
    if loading_info["missing_keys"] and not allow_missing:
        raise KeyError(
            f"The checkpoint in {pretrained_path} lacks backbone weights {sorted(loading_info['missing_keys'])}; "
            "pass allow_missing=True to keep them freshly initialised."
        )
    source = pretrained.state_dict()
    target = backbone.state_dict()
    # Frozen batch norms in DETR-style heads keep no `num_batches_tracked`; copy only what the head's backbone holds.
    backbone.load_state_dict({key: source[key] for key in target}, strict=True)
    return BackboneLoadReport(module_path=module_path, num_tensors=len(target))


def build_head_model(
    head: str,
    pretrained_path: str | PathLike,
    *,
    out_features: list[str] | None = None,
    backbone_overrides: dict | None = None,
    allow_missing: bool = False,
    **head_kwargs,
) -> PreTrainedModel:
    """Builds a transformers head model around a pretrained backbone of ours, with the backbone weights loaded.

    Args:
        head: One of "upernet", "mask2former", "detr", "deformable_detr".
        pretrained_path: Local `save_pretrained` folder of the pretrained model (any of our classes).
        out_features: Backbone stages feeding the head (default: the config's choice, often the last stage alone).
            UperNet (with its auxiliary head) and Mask2Former need at least 3 (`min_feature_maps`); fewer is a
            ValueError naming stages to pass.
        backbone_overrides: Extra backbone config fields. For "detr" / "deformable_detr", backbones with position
            tables get `interpolate_pos_encoding=True` (detection images vary in size) unless set here.
        allow_missing: See `load_pretrained_backbone`.
        head_kwargs: Fields of the head's config (num_labels, hidden sizes, ...).

    Returns:
        The head model; fine-tune it with the Trainer as any transformers model.

    Example:
        >>> model = build_head_model("upernet", "outputs/itpn-base", out_features=["stage1", "stage2", "stage3", "stage4"],
        ...                          num_labels=150)
    """
    if head not in HEADS:
        raise ValueError(f"Unknown head {head!r}: choose one of {sorted(HEADS)}.")
    config_class, model_class = HEADS[head]
    backbone_config = backbone_config_from_pretrained(pretrained_path, out_features, **(backbone_overrides or {}))
    _check_feature_maps(head, backbone_config, head_kwargs)
    if head in ("detr", "deformable_detr"):
        head_kwargs.setdefault("use_timm_backbone", False)
        # Detection batches come at any size and DETR calls the backbone with pixels only, so a backbone with
        # position tables must interpolate them per call unless the caller decided otherwise.
        if hasattr(backbone_config, "interpolate_pos_encoding") and "interpolate_pos_encoding" not in (
            backbone_overrides or {}
        ):
            backbone_config.interpolate_pos_encoding = True
    if head == "deformable_detr":
        head_kwargs.setdefault("num_feature_levels", len(backbone_config.out_features))
    model = model_class(config_class(backbone_config=backbone_config, **head_kwargs))
    load_pretrained_backbone(model, pretrained_path, allow_missing=allow_missing)
    return model
