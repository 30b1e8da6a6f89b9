"""hf_unified_pretrain: visual pre-training methods as Hugging Face transformers models.

Importing the package registers every method of `hf_unified_pretrain.models.registry` with the transformers Auto
classes. Every public name is importable from here (`from hf_unified_pretrain import ITPNForPreTraining,
build_head_model, FrozenTeacher`); names are resolved on first access, so importing the package only loads what
registration needs.
"""

from __future__ import annotations

import importlib
from typing import Any

from .models.registry import METHODS, _static_all, register_all

__version__ = "0.1.0.dev0"

register_all()

# Shared sub-packages/modules whose `__all__` is re-exported, in priority order after the methods' packages.
_SHARED_MODULES = (
    "masking",
    "objectives",
    "layers",
    "teachers",
    "downstream",
    "data",
    "training",
    "evaluation",
    "conversion",
    "cards",
    "models.registry",
)


def _build_exports() -> dict[str, str]:
    """`{public name: defining module}` from the registry's method packages, then the shared modules."""
    exports: dict[str, str] = {}
    modules = [entry.module for entry in METHODS.values()] + [f"{__name__}.{name}" for name in _SHARED_MODULES]
    for module in modules:
        for name in _static_all(module):
            exports.setdefault(name, module)
    return exports


_EXPORTS = _build_exports()
__all__ = [*sorted({*_EXPORTS, "register_all"}), "__version__"]  # noqa: PLE0604  (names from the registry)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
