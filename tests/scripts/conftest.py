"""Helpers for the run-script tests: script loading, smoke-training arguments, a 2-process launcher, PNG checks
(the tiny CLIP teacher fixture `tiny_clip_teacher` lives in tests/conftest.py)."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "training_scripts"

# A few steps on a few embedded photographs: every step logged, a checkpoint every 2 steps, fixed seed.
SMOKE_TRAIN_ARGS = [
    "--do_train",
    "--per_device_train_batch_size",
    "4",
    "--embedded_num_images",
    "24",
    "--logging_steps",
    "1",
    "--save_steps",
    "2",
    "--report_to",
    "none",
    "--seed",
    "0",
]


def launch_two_processes(script: str, args: list[str]) -> subprocess.CompletedProcess:
    """Runs `training_scripts/<script>.py args` under `accelerate launch` with 2 processes on one machine (offline,
    one thread each); the caller checks the return code and output."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(SCRIPTS / f"{script}.py"), *args,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=600)


def assert_drawn_png(path: Path, min_size: tuple[int, int] = (300, 200)) -> None:
    """The file is a PNG of at least `min_size` (width, height) with real content (many colours, not a blank canvas)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert np.unique(pixels, axis=0).shape[0] > 50, f"{path} looks blank"


def load_script(name: str) -> dict:
    """Executes `training_scripts/<name>.py` as a module (not as __main__) and returns its globals."""
    return runpy.run_path(str(SCRIPTS / f"{name}.py"), run_name=name)
