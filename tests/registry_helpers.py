"""Test parametrisation from the method registry: every registered method is tested without listing it again.

@pytest.mark.parametrize("entry", method_params("converter"))
def test_something(entry): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging as hf_logging

from hf_unified_pretrain.models.registry import METHODS, MethodEntry


def method_entries(*required: str) -> Iterator[MethodEntry]:
    """Registered entries that have every attribute in `required` set (e.g. "converter", "image_processor")."""
    for entry in METHODS.values():
        if all(getattr(entry, name) is not None for name in required):
            yield entry


def method_params(*required: str) -> list:
    """`method_entries(*required)` as pytest params with the method name as id."""
    return [pytest.param(entry, id=entry.name) for entry in method_entries(*required)]


def load_with_report(model_class, folder: Path):
    """Loads `model_class` from `folder`; returns the model, its loading info and what transformers logged."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    try:
        with CaptureLogger(hf_logging.get_logger("transformers.modeling_utils")) as captured:
            model, info = model_class.from_pretrained(folder, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, info, captured.out
