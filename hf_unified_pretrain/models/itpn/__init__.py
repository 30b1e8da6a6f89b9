"""iTPN (Integrally Pre-Trained Transformer Pyramid Networks), HiViT and Fast-iTPN as transformers models."""

from .configuration_itpn import ITPN_PRESETS, ITPNConfig
from .image_processing_itpn import ITPNImageProcessor
from .modeling_itpn import (
    ITPNBackbone,
    ITPNForImageClassification,
    ITPNForPreTraining,
    ITPNForPreTrainingOutput,
    ITPNModel,
    ITPNModelOutput,
    ITPNPreTrainedModel,
    tokens_to_feature_map,
)

__all__ = [
    "ITPN_PRESETS",
    "ITPNBackbone",
    "ITPNConfig",
    "ITPNForImageClassification",
    "ITPNForPreTraining",
    "ITPNForPreTrainingOutput",
    "ITPNImageProcessor",
    "ITPNModel",
    "ITPNModelOutput",
    "ITPNPreTrainedModel",
    "tokens_to_feature_map",
]
