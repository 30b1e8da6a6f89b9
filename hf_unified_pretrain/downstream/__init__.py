"""Downstream use of our backbones: transformers detection/segmentation heads with pretrained weights loaded."""

from .heads import (
    HEADS,
    BackboneLoadReport,
    backbone_config_from_pretrained,
    build_head_model,
    load_pretrained_backbone,
    min_feature_maps,
)

__all__ = [
    "HEADS",
    "BackboneLoadReport",
    "backbone_config_from_pretrained",
    "build_head_model",
    "load_pretrained_backbone",
    "min_feature_maps",
]
