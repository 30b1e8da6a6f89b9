"""InternImage: a hierarchical backbone built on DCNv3 deformable convolution (the backbone M3I pre-trains)."""

from .configuration_internimage import INTERNIMAGE_PRESETS, InternImageConfig
from .image_processing_internimage import InternImageImageProcessor
from .modeling_internimage import (
    InternImageBackbone,
    InternImageForImageClassification,
    InternImageModel,
    InternImagePreTrainedModel,
)

__all__ = [
    "INTERNIMAGE_PRESETS",
    "InternImageBackbone",
    "InternImageConfig",
    "InternImageForImageClassification",
    "InternImageImageProcessor",
    "InternImageModel",
    "InternImagePreTrainedModel",
]
