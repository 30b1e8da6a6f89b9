"""Shared pytest fixtures: the `../shared` folder beside the project and deterministic defaults."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_ROOT = REPO_ROOT.parent / "shared"

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# `from tests.conftest import ...` / `from tests.hf_testers import ...` must work however pytest was started
# (`python -m pytest` puts the working directory on sys.path, a bare `pytest` does not).
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def pytest_configure(config):
    """Prepares transformers' common testers before any test module is imported (see tests/hf_testers.py).

    Builds `<repo>/.cache/hf_testers/<transformers version>/` on first use (pip download of the sdist, file-locked
    and atomic) and puts it on sys.path, so test modules can `import hf_tests.*`. A failure (PyPI unreachable) only
    warns here: the modules that use the testers then fail on import with the full explanation.
    """
    from tests.hf_testers import HFTestersUnavailable, activate_hf_testers

    try:
        activate_hf_testers()
    except HFTestersUnavailable as error:
        config.issue_config_time_warning(
            pytest.PytestWarning(f"transformers' common testers are unavailable: {error}"), stacklevel=2
        )


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


@pytest.fixture(scope="session")
def tiny_clip_teacher(tmp_path_factory) -> Path:
    """A random CLIPVisionModelWithProjection whose 4x4 patch grid and 24-d projection match MVP's tiny preset."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = tmp_path_factory.mktemp("tiny_clip")
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=24,
    )
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    return folder
