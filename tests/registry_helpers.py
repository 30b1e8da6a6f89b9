"""Test parametrisation from the method registry: every registered method is tested without listing it again.

@pytest.mark.parametrize("entry", method_params("converter"))
def test_something(entry): ...
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hf_unified_pretrain.models.registry import METHODS, MethodEntry


def method_entries(*required: str) -> Iterator[MethodEntry]:
    """Registered entries that have every attribute in `required` set (e.g. "converter", "image_processor")."""
    for entry in METHODS.values():
        if all(getattr(entry, name) is not None for name in required):
            yield entry


def method_params(*required: str) -> list:
    """`method_entries(*required)` as pytest params with the method name as id."""
    return [pytest.param(entry, id=entry.name) for entry in method_entries(*required)]
