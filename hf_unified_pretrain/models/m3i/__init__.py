"""M3I: all-in-one pre-training maximising multi-modal mutual information (dense views, categories, text)."""

from .configuration_m3i import M3I_PRESETS, M3IConfig
from .modeling_m3i import (
    M3IForPreTraining,
    M3IForPreTrainingOutput,
    M3IModel,
    M3IModelOutput,
    M3IPreTrainedModel,
    mixed_image_text_loss,
    relative_position_embedding,
)

__all__ = [
    "M3I_PRESETS",
    "M3IConfig",
    "M3IForPreTraining",
    "M3IForPreTrainingOutput",
    "M3IModel",
    "M3IModelOutput",
    "M3IPreTrainedModel",
    "mixed_image_text_loss",
    "relative_position_embedding",
]
