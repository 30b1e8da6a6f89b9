"""Adding a method is one folder under `models/` plus one registry entry: a copy of the package with a toy method
added exactly that way registers it with the Auto classes, exports its classes from the top level, lists it in
`list`, offers it in `convert` (with its own usage) and `card`, and converts a checkpoint through it."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import hf_unified_pretrain

TOY_INIT = '''
"""A toy method: an MVP encoder under another model type (only for the registry test)."""

from transformers.image_processing_backends import PilBackend

from ..mvp import MVPConfig, MVPModel


class ToyConfig(MVPConfig):
    model_type = "toy_registry_test"


class ToyModel(MVPModel):
    config_class = ToyConfig


class ToyImageProcessor(PilBackend):
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True


TOY_PRESETS = {"toy": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
                       "image_size": 32, "patch_size": 8}}

__all__ = ["TOY_PRESETS", "ToyConfig", "ToyImageProcessor", "ToyModel"]
'''

TOY_CONVERTER = '''
"""Toy converter: the original keys are ours with an `encoder.` prefix."""

from ...conversion import check_converted_keys, converter_main
from . import ToyConfig, ToyModel


def config_from_original(original_kwargs, kind="toy"):
    return ToyConfig(**original_kwargs)


def convert_state_dict(original_state_dict, config):
    converted = {key.removeprefix("encoder."): value for key, value in original_state_dict.items()}
    check_converted_keys(converted, ToyModel(config).state_dict())
    return converted


def main(argv=None):
    return converter_main("toy", argv, config_from_original, convert_state_dict, kinds=("toy",),
                          model_class=lambda config, kind, converted, args: ToyModel)
'''

TOY_ENTRY = """    MethodEntry(
        name="toy",
        module="hf_unified_pretrain.models.toy",
        config="ToyConfig",
        model="ToyModel",
        image_processor="ToyImageProcessor",
        converter="hf_unified_pretrain.models.toy.convert_toy_original_to_hf",
        presets="TOY_PRESETS",
        test_preset="toy",
        card=CardInfo(name="Toy", paper_title="Toy", paper_url="https://example.org", venue="-", description="A toy.",
                      citation="@misc{toy}"),
    ),
"""

CHECKS = """
import contextlib, io, sys
import torch
import hf_unified_pretrain as h
from transformers import AutoConfig, AutoImageProcessor, AutoModel
from hf_unified_pretrain.cli import main

assert h.__file__.startswith(sys.argv[1]), h.__file__  # the copy with the toy method, not the installed package


def run(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(list(argv))
        except SystemExit as error:
            assert error.code in (0, None), error
    return out.getvalue()


config = AutoConfig.for_model("toy_registry_test", **h.TOY_PRESETS["toy"])
assert type(config) is h.ToyConfig
model = AutoModel.from_config(config)
assert type(model) is h.ToyModel and "ToyModel" in h.__all__ and "ToyModel" in dir(h)

assert "toy (model_type='toy_registry_test'): ToyConfig, ToyModel, ToyImageProcessor" in run("list")
assert "    toy " in run("convert", "--help")
assert run("convert", "toy", "--help").startswith("usage: hf-unified-pretrain convert toy")

torch.save({"model": {f"encoder.{k}": v for k, v in model.state_dict().items()}, "hyperparams": h.TOY_PRESETS["toy"]},
           "toy.pth")
run("convert", "toy", "--checkpoint", "toy.pth", "--output_dir", "converted", "--set", "drop_path_rate=0.1")
loaded = AutoModel.from_pretrained("converted")
assert type(loaded) is h.ToyModel and loaded.config.drop_path_rate == 0.1
assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
processor = AutoImageProcessor.from_pretrained("converted")
assert type(processor) is h.ToyImageProcessor and processor.size.height == 32  # sized to the config, not 224
assert "# Toy " in open("converted/README.md").read()
run("card", "converted", "--method", "toy", "--size", "mini")
assert "# Toy mini" in open("converted/README.md").read()
print("ok")
"""


def test_one_folder_and_one_registry_entry_add_a_method_everywhere(tmp_path):
    source = Path(hf_unified_pretrain.__file__).parent
    root = tmp_path / "site"
    package = root / "hf_unified_pretrain"
    shutil.copytree(source, package, ignore=shutil.ignore_patterns("__pycache__"))
    toy = package / "models" / "toy"
    toy.mkdir()
    (toy / "__init__.py").write_text(textwrap.dedent(TOY_INIT))
    (toy / "convert_toy_original_to_hf.py").write_text(textwrap.dedent(TOY_CONVERTER))
    registry = package / "models" / "registry.py"
    marker = "    # New methods: append one MethodEntry here.\n"
    text = registry.read_text()
    assert text.count(marker) == 1
    registry.write_text(text.replace(marker, TOY_ENTRY + marker))

    work = tmp_path / "work"
    work.mkdir()
    completed = subprocess.run(
        [sys.executable, "-c", CHECKS, str(root)],
        check=False,
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0 and completed.stdout.strip().endswith("ok"), completed.stderr[-4000:]
