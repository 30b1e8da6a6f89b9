"""Importing the installed package (from outside the repository) registers every registry entry with the Auto
classes, none of ours takes over a model type that transformers already ships, and every public name is exported
lazily from the top level."""

import subprocess
import sys

import pytest
import transformers
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

import hf_unified_pretrain
from hf_unified_pretrain.models.registry import ROLES, exported_names
from tests.registry_helpers import method_entries, method_params

_AUTO = {
    "model": transformers.AutoModel,
    "pretraining": transformers.AutoModelForPreTraining,
    "backbone": transformers.AutoBackbone,
    "classification": transformers.AutoModelForImageClassification,
}


def test_no_model_type_clashes_with_an_in_tree_transformers_model():
    clashes = [
        e.load("config").model_type for e in method_entries() if e.load("config").model_type in CONFIG_MAPPING_NAMES
    ]
    assert not clashes, f"model types already used by transformers: {clashes}"


def test_model_types_are_unique():
    model_types = [entry.load("config").model_type for entry in method_entries()]
    assert len(set(model_types)) == len(model_types)


@pytest.mark.parametrize("entry", method_params())
def test_every_role_resolves_through_its_auto_class(entry):
    config_class = entry.load("config")
    assert transformers.AutoConfig.for_model(config_class.model_type).__class__ is config_class
    for role, auto_class in _AUTO.items():
        if getattr(entry, role) is not None:
            assert auto_class._model_mapping[config_class] is entry.load(role)
    if entry.image_processor is not None:
        assert entry.load("image_processor") in IMAGE_PROCESSOR_MAPPING[config_class].values()


@pytest.mark.parametrize("entry", method_params())
def test_method_classes_and_public_names_are_exported_from_the_top_level(entry):
    for role in ROLES:
        name = getattr(entry, role)
        if name is not None:
            assert getattr(hf_unified_pretrain, name) is entry.load(role)
            assert name in hf_unified_pretrain.__all__
    for name in exported_names(entry):
        assert getattr(hf_unified_pretrain, name) is entry.load(name)


def test_shared_public_names_are_exported_and_listed():
    from hf_unified_pretrain.downstream import build_head_model
    from hf_unified_pretrain.teachers import FrozenTeacher

    assert hf_unified_pretrain.build_head_model is build_head_model
    assert hf_unified_pretrain.FrozenTeacher is FrozenTeacher
    assert {"build_head_model", "FrozenTeacher", "ITPNForPreTraining", "MVPConfig"} <= set(dir(hf_unified_pretrain))
    missing = [name for name in hf_unified_pretrain.__all__ if not hasattr(hf_unified_pretrain, name)]
    assert not missing


def test_exported_names_are_not_claimed_by_two_modules():
    """A name exported by two modules would silently resolve to the first: rename one of them."""
    owners: dict[str, list[str]] = {}
    modules = [entry.module for entry in method_entries()]
    modules += [f"hf_unified_pretrain.{name}" for name in hf_unified_pretrain._SHARED_MODULES]
    for module in modules:
        for name in hf_unified_pretrain._static_all(module):
            owners.setdefault(name, []).append(module)
    assert {name: where for name, where in owners.items() if len(where) > 1} == {}


def test_unknown_top_level_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NotAModel"):
        hf_unified_pretrain.NotAModel  # noqa: B018


@pytest.mark.parametrize("entry", method_params("converter"))
def test_no_model_file_imports_its_conversion_script(entry):
    """Modeling stays at the bottom of the import graph: only the converter itself may import conversion code
    (module level or inside a function)."""
    import ast
    import importlib.util
    from pathlib import Path

    folder = Path(importlib.util.find_spec(entry.module).origin).parent
    converter_name = entry.converter.rsplit(".", 1)[1]
    offenders = []
    for path in folder.glob("*.py"):
        if path.stem == converter_name:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []
            if any(converter_name in name or name.endswith("conversion") for name in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders


def test_installed_package_registers_on_import_from_any_directory(tmp_path):
    code = (
        "import sys, hf_unified_pretrain\n"
        "from transformers import AutoConfig, AutoModel\n"
        "assert hf_unified_pretrain.__file__ is not None, 'imported as a namespace package'\n"
        "for entry in hf_unified_pretrain.models.registry.METHODS.values():\n"
        "    config = AutoConfig.for_model(entry.load('config').model_type)\n"
        "    assert type(config).__name__ == entry.config\n"
        "    assert type(AutoModel.from_config(config)).__name__ == entry.model\n"
        "assert 'hf_unified_pretrain.training' not in sys.modules, 'import pulled the training stack in'\n"
        "loaded = [e.converter for e in hf_unified_pretrain.models.registry.METHODS.values() if e.converter in sys.modules]\n"
        "assert not loaded, f'registration imported conversion scripts: {loaded}'\n"
        "print('ok')\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0 and completed.stdout.strip().endswith("ok"), completed.stderr[-3000:]
