"""AMDIM: Augmented Multiscale Deep InfoMax (multi-view, multi-scale NCE between global and local features)."""

from .configuration_amdim import AMDIM_PRESETS, AMDIMConfig
from .image_processing_amdim import AMDIMImageProcessor
from .modeling_amdim import (
    AMDIMBackbone,
    AMDIMForImageClassification,
    AMDIMForPreTraining,
    AMDIMForPreTrainingOutput,
    AMDIMModel,
    AMDIMModelOutput,
    AMDIMPreTrainedModel,
    amdim_classifier_loss,
)

__all__ = [
    "AMDIM_PRESETS",
    "AMDIMBackbone",
    "AMDIMConfig",
    "AMDIMForImageClassification",
    "AMDIMForPreTraining",
    "AMDIMForPreTrainingOutput",
    "AMDIMImageProcessor",
    "AMDIMModel",
    "AMDIMModelOutput",
    "AMDIMPreTrainedModel",
    "amdim_classifier_loss",
]
