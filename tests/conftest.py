"""Shared pytest fixtures: the `../shared` folder beside the project and deterministic defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ROOT = REPO_ROOT.parent / "shared"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def shared_path(*parts: str) -> Path:
    """Returns `../shared/<parts>`; skips the calling test when it is absent, but fails when `CI=true`."""
    path = SHARED_ROOT.joinpath(*parts)
    if not path.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{path} is missing, but CI=true requires ../shared beside the project root.")
        pytest.skip(f"{path} not found (../shared is absent)")
    return path


@pytest.fixture
def shared_dir():
    """The `../shared` folder (skip when absent, fail when CI=true)."""
    return shared_path()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
