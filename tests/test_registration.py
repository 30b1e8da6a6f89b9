"""Importing the installed package (from outside the repository) registers every model type, and none of ours
takes over a model type that transformers already ships."""

import subprocess
import sys

from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

from hf_unified_pretrain.models.auto import _METHODS


def _config_classes():
    import importlib

    for package, classes in _METHODS.items():
        yield getattr(importlib.import_module(f"hf_unified_pretrain.models.{package}"), classes["config"])


def test_no_model_type_clashes_with_an_in_tree_transformers_model():
    clashes = [cls.model_type for cls in _config_classes() if cls.model_type in CONFIG_MAPPING_NAMES]
    assert not clashes, f"model types already used by transformers: {clashes}"


def test_installed_package_registers_on_import_from_any_directory(tmp_path):
    code = (
        "import hf_unified_pretrain, importlib\n"
        "from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoModelForImageClassification\n"
        "from hf_unified_pretrain.models.auto import _METHODS\n"
        "assert hf_unified_pretrain.__file__ is not None, 'imported as a namespace package'\n"
        "for package, classes in _METHODS.items():\n"
        "    module = importlib.import_module(f'hf_unified_pretrain.models.{package}')\n"
        "    config = AutoConfig.for_model(getattr(module, classes['config']).model_type)\n"
        "    assert type(config).__name__ == classes['config']\n"
        "    assert type(AutoModel.from_config(config)).__name__ == classes['model']\n"
        "print('ok')\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0 and completed.stdout.strip().endswith("ok"), completed.stderr[-3000:]
