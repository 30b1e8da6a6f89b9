"""MultiMAE: Multi-modal Multi-task Masked Autoencoders (RGB, depth and semantic maps; Dirichlet multi-modal masking)."""

from .configuration_multimae import MULTIMAE_PRESETS, ModalitySpec, MultiMAEConfig, default_modalities
from .image_processing_multimae import MultiMAEImageProcessor
from .modeling_multimae import (
    MultiMAEBackbone,
    MultiMAEForImageClassification,
    MultiMAEForPreTraining,
    MultiMAEForPreTrainingOutput,
    MultiMAEForSemanticSegmentation,
    MultiMAEModel,
    MultiMAEModelOutput,
    MultiMAEPreTrainedModel,
)

__all__ = [
    "MULTIMAE_PRESETS",
    "ModalitySpec",
    "MultiMAEBackbone",
    "MultiMAEConfig",
    "MultiMAEForImageClassification",
    "MultiMAEForPreTraining",
    "MultiMAEForPreTrainingOutput",
    "MultiMAEForSemanticSegmentation",
    "MultiMAEImageProcessor",
    "MultiMAEModel",
    "MultiMAEModelOutput",
    "MultiMAEPreTrainedModel",
    "default_modalities",
]
