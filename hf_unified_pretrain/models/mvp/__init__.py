"""MVP: Multimodality-guided Visual Pre-training (BEiT-style student, frozen CLIP vision teacher)."""

from .configuration_mvp import MVP_PRESETS, MVPConfig
from .image_processing_mvp import MVPImageProcessor
from .modeling_mvp import (
    MVPBackbone,
    MVPForImageClassification,
    MVPForPreTraining,
    MVPForPreTrainingOutput,
    MVPModel,
    MVPPreTrainedModel,
)

__all__ = [
    "MVP_PRESETS",
    "MVPBackbone",
    "MVPConfig",
    "MVPForImageClassification",
    "MVPForPreTraining",
    "MVPForPreTrainingOutput",
    "MVPImageProcessor",
    "MVPModel",
    "MVPPreTrainedModel",
]
