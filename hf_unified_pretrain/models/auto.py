"""The one place where every model of the package is registered with the transformers Auto classes.

Importing `hf_unified_pretrain` calls `register_all()`, after which `AutoConfig`, `AutoModel`,
`AutoModelForPreTraining`, `AutoBackbone`, `AutoModelForImageClassification` and `AutoImageProcessor` resolve our
model types. Registration uses `exist_ok=True`, so importing twice (or reloading) is harmless.
"""

from __future__ import annotations

import importlib

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPreTraining,
)

# Each method package exports the classes named here; adding a method is adding one row.
_METHODS: dict[str, dict[str, str]] = {
    "itpn": {
        "config": "ITPNConfig",
        "model": "ITPNModel",
        "pretraining": "ITPNForPreTraining",
        "backbone": "ITPNBackbone",
        "classification": "ITPNForImageClassification",
        "image_processor": "ITPNImageProcessor",
    },
    "mvp": {
        "config": "MVPConfig",
        "model": "MVPModel",
        "pretraining": "MVPForPreTraining",
        "backbone": "MVPBackbone",
        "classification": "MVPForImageClassification",
        "image_processor": "MVPImageProcessor",
    },
}


def _register_method(package: str, classes: dict[str, str]) -> None:
    module = importlib.import_module(f"hf_unified_pretrain.models.{package}")
    config_class = getattr(module, classes["config"])
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    for auto_class, key in (
        (AutoModel, "model"),
        (AutoModelForPreTraining, "pretraining"),
        (AutoBackbone, "backbone"),
        (AutoModelForImageClassification, "classification"),
    ):
        if key in classes:
            auto_class.register(config_class, getattr(module, classes[key]), exist_ok=True)
    if "image_processor" in classes:
        processors = {"pil": getattr(module, classes["image_processor"])}
        AutoImageProcessor.register(config_class, image_processor_classes=processors, exist_ok=True)


def register_all() -> None:
    """Registers every method's config, models and image processor with the transformers Auto classes."""
    for package, classes in _METHODS.items():
        _register_method(package, classes)
