"""transformers' own common testers (ModelTesterMixin, BackboneTesterMixin, ConfigTester, ImageProcessingTestMixin),
run against our out-of-tree models.

The transformers wheel ships no `tests/`; the PyPI sdist of the same version does (the `*_common.py` files only).
This module builds, once per installed transformers version, an importable copy of that folder plus the few shims
it needs, then puts it on `sys.path`:

```
<repo>/.cache/hf_testers/<transformers version>/      (git-ignored; rebuilt when the version or the shims change)
    hf_tests/                      the sdist's tests/ as a package (renamed: no clash with our own `tests`)
        exporters/test_export.py   shim: ExportTesterMixin (the real one needs repo-only exporter code)
        generation/test_utils.py   shim: GenerationTesterMixin (vision encoders do not generate)
        utils/test_configuration_utils.py   shim: `config_common_kwargs` (the v5 values ConfigTester checks)
        oot_compat.py              `expose_model_names_to_testers` (see below)
    utils/fetch_hub_objects_for_ci.py   shim: maps the fixture-image URLs of the image-processing tests to
                                   deterministic images generated under fixtures/ (no network)
    fixtures/                      those images, generated at build time
    harness_stamp.json             transformers version + hash of the shims; the folder is complete iff it exists
```

`tests/conftest.py` calls `activate_hf_testers()` when pytest starts. The build downloads the sdist with
`python -m pip download transformers==<ver> --no-binary :all: --no-deps --no-build-isolation` (~10 MB, ~10 s, PyPI
only; set `HF_TESTERS_SDIST=/path/to/transformers-<ver>.tar.gz` to use a local copy instead). It is atomic (built
in a temporary sibling folder, then renamed into place) and serialised by a file lock, so several pytest runs
started at once on one machine build it once and never see a half-written folder. If PyPI cannot be reached the
session still starts, and only the modules that import the testers fail, with a `HFTestersUnavailable` message
saying what to do.

How a model test module uses it (e.g. `tests/models/mvp/test_modeling_mvp.py`)
-------------------------------------------------------------------------------

```python
import unittest

import torch
from torch import nn

from tests.hf_testers import (           # importing this module builds/activates the testers if needed
    BackboneTesterMixin,
    ConfigTester,
    ModelTesterMixin,
    VisionModelTestOverrides,            # our common overrides, put it FIRST in the bases
    expose_model_names_to_testers,
    floats_tensor,
    ids_tensor,
)
from hf_unified_pretrain.models.mvp import (MVPBackbone, MVPConfig, MVPForImageClassification,
                                            MVPForPreTraining, MVPModel)

# The mixins decide by class NAME (looked up in transformers' in-tree *_MAPPING_NAMES dicts) which classes are
# base models / backbones (skipped in the training tests: they have no loss) and which labels
# `_prepare_for_class(..., return_labels=True)` adds (image classification -> `labels`). Our classes are not in
# those dicts, so publish them once per model type (test-only; stored under "<type> [out-of-tree test]", so real
# Auto* resolution and in-tree entries of a clashing type -- transformers has a text model called "mvp" -- stay as
# they are).
expose_model_names_to_testers(
    "mvp", model=MVPModel, backbone=MVPBackbone, image_classification=MVPForImageClassification,
    pretraining=MVPForPreTraining,
)


class MVPModelTester:
    # Required attributes: batch_size, is_training, hidden_size, num_hidden_layers, num_attention_heads,
    # seq_length (tokens incl. [CLS]; hidden-states/attention shape checks use it), image_size, patch_size,
    # num_channels; methods get_config() and prepare_config_and_inputs_for_common() -> (config, {"pixel_values": x}).
    # Optional: `noise_length` -> VisionModelTestOverrides injects a fixed `noise` of shape (batch, noise_length)
    # into every class whose forward takes `noise` (random-masking pre-training models stay deterministic);
    # `fixed_model_inputs(model_class, batch_size) -> dict` for anything else (e.g. a fixed `bool_masked_pos`,
    # `teacher_features`) merged into the inputs of that class.
    def __init__(self, parent, batch_size=2, image_size=32, patch_size=8, ...): ...


class MVPModelTest(VisionModelTestOverrides, ModelTesterMixin, unittest.TestCase):
    all_model_classes = (MVPModel, MVPForPreTraining, MVPBackbone, MVPForImageClassification)

    def setUp(self):
        self.model_tester = MVPModelTester(self)
        self.config_tester = ConfigTester(self, config_class=MVPConfig, has_text_modality=False, hidden_size=37)

    def test_config(self):
        self.config_tester.run_common_tests()


class MVPBackboneTest(BackboneTesterMixin, unittest.TestCase):   # note the order: the mixin first, like in-tree
    all_model_classes = (MVPBackbone,)
    config_class = MVPConfig        # must be constructible without arguments
    has_attentions = False          # BackboneTesterMixin only checks attentions if True (True for ViTs is fine too)

    def setUp(self):
        self.model_tester = MVPModelTester(self)
```

Image processors: subclass `PilImageProcessingTester` (not `ImageProcessingTester`: the upstream one infers the
processor from the test *folder* name through transformers' in-tree table, which does not know our classes) and add
`PilOnlyImageProcessingOverrides` before `ImageProcessingTestMixin`:

```python
class MVPImageProcessingTester(PilImageProcessingTester):
    image_processing_classes_by_backend = {"pil": MVPImageProcessor}

    def __init__(self, parent, **kwargs):
        kwargs.setdefault("size", {"height": 18, "width": 18})
        super().__init__(parent, min_resolution=30, max_resolution=60, **kwargs)


class MVPImageProcessingTest(PilOnlyImageProcessingOverrides, ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = MVPImageProcessingTester
```

Gotchas (transformers 5.23; all handled by `VisionModelTestOverrides` unless said otherwise)
-----------------------------------------------------------------------------------------------
- `test_can_init_all_missing_weights` (the test that catches parameters `_init_weights` forgets) is SKIPPED unless
  the config's source file starts with a `# Copyright 2023`-or-later line, or the test class sets
  `test_can_init_all_missing_weights_before_2023 = True` (done by the overrides).
- `test_resize_embeddings = False`, `test_torch_exportable = False` (no token embeddings; export tests are shimmed).
- `test_model_get_set_embeddings` expects an `nn.Embedding`; the overrides check `get_input_embeddings()` is an
  `nn.Module` (set `_input_embed_layer = "patch_embeddings"` or define `get_input_embeddings`) and that
  `get_output_embeddings()` is None or an `nn.Linear`. `test_inputs_embeds` is skipped (pixel models).
- Classes are compared by NAME with the in-tree tables, hence `expose_model_names_to_testers` (above). Without it
  `test_training*` fail with "'BaseModelOutput' object has no attribute 'loss'" for base/backbone classes, and no
  `labels` reach the classification head.
- `_prepare_for_class` special-cases only in-tree models (e.g. Hiera's noise). Random masking must be made
  deterministic by the test (`noise_length` / `fixed_model_inputs`, above) instead of skipping the determinism,
  batching-equivalence and save/load tests. A `...ForPreTraining` that needs a teacher must get
  `teacher_features` this way too.
- ModelTester must expose `num_hidden_layers`, `hidden_size`, `seq_length`, `num_attention_heads`, `is_training`,
  `batch_size`; hierarchical / conv models (iTPN stages) override `test_hidden_states_output` and
  `test_attention_outputs` as in-tree Swin/ResNet tests do. `test_num_layers_is_small` wants
  `num_hidden_layers <= 2`-ish and `test_model_is_small` < 1M parameters per class.
- BackboneTesterMixin: `config_class()` must work without arguments; the stage count comes from `depths` or
  `num_hidden_layers` (`stage_names = ["stem", "stage1", ...]`).
- Expose only `pretraining=` for a `...ForPreTraining` class, not `masked_image_modeling=`: the latter makes the mixin
  add an all-zero LONG `bool_masked_pos` sized for a square ViT grid.
- `test_new_models_require_torchvision_backend` (image processors) fails for PIL-only processors: this project ships
  PIL-backend processors only (torchvision is not part of the stack); `PilOnlyImageProcessingOverrides` skips it.
- With `from __future__ import annotations` in a modeling file, the `config: XConfig` annotation of the
  PreTrainedModel is a string and becomes `config_class` as such: `AutoModel.register` then fails with "'str' object
  has no attribute '__name__'". Drop the future import there, or also set `config_class = XConfig`.
- `_init_weights` runs per PreTrainedModel: modules inside a nested PreTrainedModel (e.g. an encoder written as
  `class XEncoder(XPreTrainedModel)`, Dinov2 style) are initialised by THAT model's `_init_weights`.
- To prove a tester really runs (our suite must not pass by skipping), run it on a deliberately broken copy with
  `run_test_methods(BrokenTestCase, "test_can_init_all_missing_weights")` and assert `result.failures` (see
  tests/test_hf_harness.py); define such TestCase classes inside the test function so pytest does not collect them.
- Run with `HF_HUB_OFFLINE=1 python -m pytest tests/...` (pyproject already passes `-p no:cacheprovider` and silences
  the unknown-mark warnings of the upstream files). Nothing in the testers touches the network.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_ROOT = REPO_ROOT / ".cache" / "hf_testers"
SDIST_ENV = "HF_TESTERS_SDIST"
# Set by `activate_hf_testers` after a failed build so later imports in the same pytest session fail at once with
# the same message instead of retrying the download for every test module.
_FAILURE_ENV = "HF_TESTERS_SETUP_ERROR"
LOCK_TIMEOUT_S = 900

# Bump when the build logic (not the shim text, which is hashed) changes in a way that needs a rebuild.
_BUILD_REVISION = 1


class HFTestersUnavailable(RuntimeError):
    """transformers' common testers could not be prepared (typically: PyPI unreachable)."""


# ----------------------------------------------------------------------------------------------------------------
# Shims, written into the cache folder (paths relative to it).
# ----------------------------------------------------------------------------------------------------------------

_EXPORT_SHIM = '''"""Stand-in for transformers' repo-only tests/exporters/test_export.py (hf_unified_pretrain harness).

The real mixin needs exporter code newer than the released wheel; ModelTesterMixin only inherits from it."""


class ExportTesterMixin:
    pass
'''

_GENERATION_SHIM = '''"""Stand-in for transformers' repo-only tests/generation/test_utils.py (hf_unified_pretrain harness).

Vision encoders do not generate, so the generation tests have nothing to run."""


class GenerationTesterMixin:
    pass
'''

_CONFIG_UTILS_SHIM = '''"""Stand-in for transformers' repo-only tests/utils/test_configuration_utils.py (hf_unified_pretrain harness).

ConfigTester.check_config_arguments_init only needs `config_common_kwargs`: a non-default value for each common
PreTrainedConfig field of transformers v5, which every config must accept and store."""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
'''

_OOT_COMPAT = '''"""Lets the name-based dispatch of test_modeling_common see out-of-tree classes (hf_unified_pretrain harness).

test_modeling_common decides by class NAME, through transformers' in-tree `MODEL_*_MAPPING_NAMES` dicts, which classes
are base models or backbones (no loss: skipped by the training tests) and which labels `_prepare_for_class` adds; it
reads only the dicts' VALUES. `expose_model_names_to_testers` adds our names under a key that is no model type
(`"<model_type> [out-of-tree test]"`), so Auto* resolution cannot be affected (the lazy Auto mappings only consider
keys listed in CONFIG_MAPPING_NAMES) and a model type that clashes with an in-tree one (ours "mvp" vs the MVP text
model) does not overwrite the in-tree entry."""

from transformers.models.auto import modeling_auto as _modeling_auto

MAPPING_NAMES_BY_KIND = {
    "model": "MODEL_MAPPING_NAMES",
    "backbone": "MODEL_FOR_BACKBONE_MAPPING_NAMES",
    "image_classification": "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
    "pretraining": "MODEL_FOR_PRETRAINING_MAPPING_NAMES",
    "masked_image_modeling": "MODEL_FOR_MASKED_IMAGE_MODELING_MAPPING_NAMES",
    "semantic_segmentation": "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES",
    "depth_estimation": "MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES",
}


def exposed_key(model_type):
    return f"{model_type} [out-of-tree test]"


def expose_model_names_to_testers(model_type, **classes):
    """`expose_model_names_to_testers("mvp", model=MVPModel, backbone=MVPBackbone, ...)` (classes or class names)."""
    unknown = sorted(set(classes) - set(MAPPING_NAMES_BY_KIND))
    if unknown:
        raise ValueError(f"Unknown kind(s) {unknown}; choose from {sorted(MAPPING_NAMES_BY_KIND)}.")
    for kind, cls in classes.items():
        names = getattr(_modeling_auto, MAPPING_NAMES_BY_KIND[kind])
        names[exposed_key(model_type)] = cls if isinstance(cls, str) else cls.__name__
'''

_FETCH_SHIM = '''"""Stand-in for transformers' repo-only utils/fetch_hub_objects_for_ci.py (hf_unified_pretrain harness).

test_image_processing_common loads COCO / ADE20k fixture images by URL. Offline, each image URL maps to a
deterministic random image (same file name, same size class) generated under ../fixtures; ADE20k `.png` files are
single-channel label maps with values in [0, 150)."""

import os
import tempfile
import zlib

import numpy as np

FIXTURES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _write_image(path, name):
    from PIL import Image

    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if name.startswith("ADE_") and name.endswith(".png"):
        image = Image.fromarray(rng.integers(0, 150, (480, 640), dtype=np.uint8))
    else:
        image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    # write-then-rename: concurrent test runs never read a half-written file
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=os.path.splitext(name)[1])
    os.close(fd)
    image.save(tmp)
    os.replace(tmp, path)


def url_to_local_path(url, return_url_if_not_found=True):
    name = url.rstrip("/").split("/")[-1].split("?")[0]
    if not name.lower().endswith(IMAGE_SUFFIXES):
        if return_url_if_not_found:
            return url
        raise FileNotFoundError(f"No offline stand-in for {url} (only images are generated).")
    os.makedirs(FIXTURES_DIR, exist_ok=True)
    path = os.path.join(FIXTURES_DIR, name)
    if not os.path.exists(path):
        _write_image(path, name)
    return path
'''

_SHIMS: dict[str, str] = {
    "hf_tests/__init__.py": "",
    "hf_tests/exporters/__init__.py": "",
    "hf_tests/exporters/test_export.py": _EXPORT_SHIM,
    "hf_tests/generation/__init__.py": "",
    "hf_tests/generation/test_utils.py": _GENERATION_SHIM,
    "hf_tests/utils/__init__.py": "",
    "hf_tests/utils/test_configuration_utils.py": _CONFIG_UTILS_SHIM,
    "hf_tests/oot_compat.py": _OOT_COMPAT,
    "utils/fetch_hub_objects_for_ci.py": _FETCH_SHIM,
}
_STAMP_NAME = "harness_stamp.json"
_FIXTURE_URL = re.compile(r"https://huggingface\.co/[^\s\"']+?\.(?:jpg|jpeg|png)")


# ----------------------------------------------------------------------------------------------------------------
# Building the cache folder
# ----------------------------------------------------------------------------------------------------------------


def installed_transformers_version() -> str:
    import transformers

    return transformers.__version__


def testers_dir(version: str | None = None, cache_root: Path | None = None) -> Path:
    """The folder that holds `hf_tests/` for `version` (default: the installed transformers)."""
    return Path(cache_root or CACHE_ROOT) / (version or installed_transformers_version())


def _expected_stamp(version: str) -> dict:
    digest = hashlib.sha256()
    for rel_path in sorted(_SHIMS):
        digest.update(rel_path.encode() + b"\0" + _SHIMS[rel_path].encode() + b"\0")
    return {"transformers": version, "shims_sha256": digest.hexdigest(), "build_revision": _BUILD_REVISION}


def _is_complete(folder: Path, version: str) -> bool:
    try:
        return json.loads((folder / _STAMP_NAME).read_text()) == _expected_stamp(version)
    except (OSError, ValueError):
        return False


def _download_sdist(version: str, download_dir: Path) -> Path:
    """Fetches `transformers-<version>.tar.gz` with pip (or takes `$HF_TESTERS_SDIST`) and returns its path."""
    local = os.environ.get(SDIST_ENV)
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise HFTestersUnavailable(f"${SDIST_ENV} points to {path}, which is not a file.")
        return path
    command = [sys.executable, "-m", "pip", "download", f"transformers=={version}", "--no-binary", ":all:"]
    command += [
        "--no-deps",
        "--disable-pip-version-check",
        "--timeout",
        "30",
        "--retries",
        "2",
        "-d",
        str(download_dir),
    ]
    # pip reads the sdist's metadata through its build backend. `--no-build-isolation` avoids installing a build
    # environment for that, but needs setuptools here (a Python >= 3.12 venv has none): then let pip isolate.
    if importlib.util.find_spec("setuptools") is not None:
        command.append("--no-build-isolation")
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    found = sorted(download_dir.glob(f"transformers-{version}.tar.gz"))
    if result.returncode == 0 and found:
        return found[0]
    pip_output = (result.stderr or result.stdout).strip()[-3000:]
    raise HFTestersUnavailable(
        f"Could not download the transformers {version} source distribution from PyPI; it provides transformers' "
        "common testers (tests/test_modeling_common.py, ...) that tests/hf_testers.py runs against our models.\n"
        f"Fix: make PyPI reachable for pip (proxy / PIP_INDEX_URL), or download transformers-{version}.tar.gz "
        f"elsewhere and set {SDIST_ENV}=/path/to/transformers-{version}.tar.gz.\n"
        f"$ {' '.join(command)}\n(exit code {result.returncode})\n{pip_output}"
    )


def _extract_tests(sdist: Path, version: str, destination: Path) -> None:
    """Copies the sdist's `transformers-<version>/tests/` to `destination` (which must not exist)."""
    prefix = f"transformers-{version}/tests/"
    with tarfile.open(sdist) as archive, tempfile.TemporaryDirectory(dir=destination.parent) as unpack_dir:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix) and (m.isfile() or m.isdir())]
        if not any(m.name.endswith("/test_modeling_common.py") for m in members):
            raise HFTestersUnavailable(f"{sdist} has no {prefix}test_modeling_common.py; is it a transformers sdist?")
        extract_kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(unpack_dir, members=members, **extract_kwargs)
        shutil.move(os.path.join(unpack_dir, prefix), destination)


def _write_shims(folder: Path) -> None:
    for rel_path, text in _SHIMS.items():
        path = folder / rel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _generate_fixture_images(folder: Path) -> None:
    """Creates, at build time, every image the image-processing tests fetch by URL (lazily generated otherwise)."""
    sources = [folder / "hf_tests" / name for name in ("test_image_processing_common.py", "test_processing_common.py")]
    urls = sorted({url for src in sources if src.exists() for url in _FIXTURE_URL.findall(src.read_text("utf-8"))})
    spec = importlib.util.spec_from_file_location(
        "_hf_testers_fetch_shim", folder / "utils" / "fetch_hub_objects_for_ci.py"
    )
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)  # its FIXTURES_DIR is <folder>/fixtures, derived from the file's location
    for url in urls:
        shim.url_to_local_path(url)


def _build(version: str, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.building-", dir=destination.parent))
    try:
        with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".sdist-") as download_dir:
            sdist = _download_sdist(version, Path(download_dir))
            _extract_tests(sdist, version, staging / "hf_tests")
        _write_shims(staging)
        _generate_fixture_images(staging)
        (staging / _STAMP_NAME).write_text(json.dumps(_expected_stamp(version), indent=2))
        stale = None
        if destination.exists():  # an older harness build: move it aside, then swap atomically
            stale = Path(tempfile.mkdtemp(prefix=f".{version}.stale-", dir=destination.parent))
            os.replace(destination, stale / "old")
        os.replace(staging, destination)
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _file_lock(path: Path):
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(path), timeout=LOCK_TIMEOUT_S):
            yield
    except Timeout as error:
        raise HFTestersUnavailable(
            f"Waited {LOCK_TIMEOUT_S} s for {path} (another run is building the testers). If no pytest is running, "
            "delete the lock file and retry."
        ) from error


def ensure_hf_testers(version: str | None = None, cache_root: Path | None = None) -> Path:
    """Builds (if needed) and returns the folder to put on `sys.path` for `import hf_tests`.

    Safe to call from several processes at once: the build happens under a file lock, into a temporary folder that
    is renamed into place only when complete.

    Raises:
        HFTestersUnavailable: the sdist could not be obtained (message says how to fix it).
    """
    version = version or installed_transformers_version()
    folder = testers_dir(version, cache_root)
    if _is_complete(folder, version):
        return folder
    with _file_lock(folder.parent / f"{version}.lock"):
        if not _is_complete(folder, version):  # another process may have finished while we waited
            _build(version, folder)
    return folder


_activation: dict[str, object] = {}


def activate_hf_testers() -> Path:
    """`ensure_hf_testers()` once per process, then puts the folder on `sys.path`. Re-raises a failure each call."""
    if os.environ.get(_FAILURE_ENV):
        raise HFTestersUnavailable(os.environ[_FAILURE_ENV])
    if "folder" not in _activation:
        try:
            _activation["folder"] = ensure_hf_testers()
        except HFTestersUnavailable as error:
            os.environ[_FAILURE_ENV] = str(error)
            raise
    folder = str(_activation["folder"])
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return Path(folder)


# ----------------------------------------------------------------------------------------------------------------
# What model tests import. The upstream testers are loaded lazily (module `__getattr__`): importing them costs
# several seconds, which a pytest session that runs no model test (conftest only activates the folder) should not pay.
# ----------------------------------------------------------------------------------------------------------------

_LAZY_EXPORTS = {
    "ModelTesterMixin": "hf_tests.test_modeling_common",
    "floats_tensor": "hf_tests.test_modeling_common",
    "ids_tensor": "hf_tests.test_modeling_common",
    "BackboneTesterMixin": "hf_tests.test_backbone_common",
    "ConfigTester": "hf_tests.test_configuration_common",
    "ImageProcessingTester": "hf_tests.test_image_processing_common",
    "ImageProcessingTestMixin": "hf_tests.test_image_processing_common",
    "prepare_image_inputs": "hf_tests.test_image_processing_common",
    "expose_model_names_to_testers": "hf_tests.oot_compat",
    "MAPPING_NAMES_BY_KIND": "hf_tests.oot_compat",
}


def __getattr__(name: str):
    if name in _LAZY_EXPORTS:
        activate_hf_testers()
        value = getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
    elif name == "PilImageProcessingTester":
        value = _make_pil_image_processing_tester()
    elif name == "CenterCropImageProcessingTester":
        value = _make_center_crop_image_processing_tester()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


class VisionModelTestOverrides:
    """Our common overrides for ModelTesterMixin on pixel-input models. Put it BEFORE ModelTesterMixin in the bases.

    Model-tester hooks (all optional):
        noise_length (int): inject a fixed `noise` tensor (batch_size, noise_length) into every class whose forward
            has a `noise` argument (random masking becomes deterministic for determinism / batching / save-load tests).
        fixed_model_inputs(model_class, batch_size) -> dict: extra inputs for that class (bool_masked_pos,
            teacher_features, ...). Tensors must depend only on their arguments (seed your generator).
    """

    test_can_init_all_missing_weights_before_2023 = True
    test_resize_embeddings = False
    test_torch_exportable = False

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        tester = self.model_tester
        batch_size = inputs_dict["pixel_values"].shape[0] if "pixel_values" in inputs_dict else tester.batch_size
        device = inputs_dict["pixel_values"].device if "pixel_values" in inputs_dict else None
        forward_args = inspect.signature(model_class.forward).parameters
        noise_length = getattr(tester, "noise_length", None)
        if noise_length is not None and "noise" in forward_args and "noise" not in inputs_dict:
            generator = torch.Generator().manual_seed(1234)
            inputs_dict["noise"] = torch.rand(batch_size, noise_length, generator=generator).to(device)
        fixed = getattr(tester, "fixed_model_inputs", None)
        if fixed is not None:
            for name, value in fixed(model_class, batch_size).items():
                inputs_dict.setdefault(name, value.to(device) if isinstance(value, torch.Tensor) else value)
        return inputs_dict

    def test_reverse_loading_mapping(self):
        # Our registered conversion (`layers.register_position_table_resizing`: position tables saved for another
        # image size are resized on load) keeps every key name, so upstream's "keys were renamed" check cannot hold.
        super().test_reverse_loading_mapping(check_keys_were_modified=False)

    def test_model_get_set_embeddings(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIsInstance(model.get_input_embeddings(), nn.Module)
            output_embeddings = model.get_output_embeddings()
            self.assertTrue(output_embeddings is None or isinstance(output_embeddings, nn.Linear))

    @unittest.skip(reason="pixel-input model: no inputs_embeds")
    def test_inputs_embeds(self):
        pass

    def test_model_outputs_equivalence(self):
        # Upstream compares every output with `torch.allclose` and formats `a - b` into its failure message, both of
        # which reject bool tensors; pre-training outputs carry the bool `bool_masked_pos` (the project's mask
        # convention). Upstream's checks run unchanged, with bool tensors compared exactly.
        from unittest import mock

        allclose, subtract = torch.allclose, torch.Tensor.__sub__

        def allclose_or_equal(first, second, *args, **kwargs):
            if first.dtype == torch.bool:
                return torch.equal(first, second)
            return allclose(first, second, *args, **kwargs)

        def subtract_or_xor(first, second):
            if isinstance(first, torch.Tensor) and first.dtype == torch.bool:
                return (first ^ second).to(torch.uint8)
            return subtract(first, second)

        with (
            mock.patch("torch.allclose", allclose_or_equal),
            mock.patch.object(torch.Tensor, "__sub__", subtract_or_xor),
        ):
            super().test_model_outputs_equivalence()


def _make_pil_image_processing_tester() -> type:
    base = __getattr__("ImageProcessingTester")

    class PilImageProcessingTester(base):
        """ImageProcessingTester whose processor classes are given explicitly (`image_processing_classes_by_backend`)
        instead of being inferred from the test folder name through transformers' in-tree table."""

        image_processing_classes_by_backend: ClassVar[dict[str, type]] = {}

        def _get_image_processing_classes(self) -> dict[str, type]:
            if not self.image_processing_classes_by_backend:
                raise ValueError(f"{type(self).__name__}.image_processing_classes_by_backend is empty.")
            return dict(self.image_processing_classes_by_backend)

    PilImageProcessingTester.__module__ = __name__
    PilImageProcessingTester.__qualname__ = "PilImageProcessingTester"
    return PilImageProcessingTester


def _make_center_crop_image_processing_tester() -> type:
    base = __getattr__("PilImageProcessingTester")

    class CenterCropImageProcessingTester(base):
        """For processors that resize the shortest edge, then center-crop (iTPN, AMDIM): 20 px edge, 18x18 crop."""

        def __init__(self, parent, **kwargs):
            kwargs.setdefault("size", {"shortest_edge": 20})
            kwargs.setdefault("crop_size", {"height": 18, "width": 18})
            kwargs.setdefault("do_center_crop", True)
            super().__init__(parent, min_resolution=30, max_resolution=60, **kwargs)

        def prepare_image_processor_dict(self):
            return {**super().prepare_image_processor_dict(), "do_center_crop": True, "crop_size": self.crop_size}

        def expected_output_image_shape(self, images):
            return self.num_channels, self.crop_size["height"], self.crop_size["width"]

    CenterCropImageProcessingTester.__module__ = __name__
    CenterCropImageProcessingTester.__qualname__ = "CenterCropImageProcessingTester"
    return CenterCropImageProcessingTester


class PilOnlyImageProcessingOverrides:
    """Put before ImageProcessingTestMixin for processors that have only the PIL backend (all of ours)."""

    @unittest.skip(reason="hf_unified_pretrain ships PIL-backend processors only (torchvision is not in the stack)")
    def test_new_models_require_torchvision_backend(self):
        pass


def run_test_methods(test_case_class: type[unittest.TestCase], *method_names: str) -> unittest.TestResult:
    """Runs the given methods of a TestCase class outside pytest's collection and returns the unittest result.

    Used to prove a tester really fails on a broken model (`result.failures`) without making our suite red.
    """
    suite = unittest.TestSuite(test_case_class(name) for name in method_names)
    result = unittest.TestResult()
    suite.run(result)
    return result


__all__ = [
    "HFTestersUnavailable",
    "PilOnlyImageProcessingOverrides",
    "VisionModelTestOverrides",
    "activate_hf_testers",
    "ensure_hf_testers",
    "run_test_methods",
    "testers_dir",
]
# The upstream names and our two image-processor testers are served lazily by `__getattr__`.
__all__.extend([*_LAZY_EXPORTS, "PilImageProcessingTester", "CenterCropImageProcessingTester"])
