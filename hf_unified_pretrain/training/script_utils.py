"""Helpers that keep every `training_scripts/run_<method>.py` short: logging, resuming, config/model/teacher set-up.

Models are reached only through the transformers Auto classes and configs (registered by importing
`hf_unified_pretrain`), never through one method's modules.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, AutoModelForPreTraining, PreTrainedConfig, PreTrainedModel, TrainingArguments

from .arguments import ModelArguments

logger = logging.getLogger(__name__)

_RESUME_LAST = {"last", "true", "True", "latest"}


def check_distributed_launch(training_args: TrainingArguments) -> None:
    """Refuses a multi-process launch whose processes did not join one process group.

    Without it, `accelerate launch`/`torchrun` on a machine without GPUs starts N independent single-process runs
    that all write the same output folder.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and training_args.parallel_mode.value != "distributed":
        raise RuntimeError(
            f"This script was launched as {world_size} processes, but they did not form a process group (no GPU "
            "was found). For multi-process training on CPUs pass --use_cpu (gloo backend), or launch one process."
        )


def setup_logging(training_args: TrainingArguments, name: str = "hf_unified_pretrain") -> logging.Logger:
    """Configures Python, transformers and datasets logging like the official example scripts, after checking that
    a multi-process launch really formed one process group (`check_distributed_launch`).

    Returns:
        The logger `name`, at the process log level (INFO on the main process by default, WARNING elsewhere).
    """
    check_distributed_launch(training_args)
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    if training_args.should_log:
        transformers.utils.logging.set_verbosity_info()
    log_level = training_args.get_process_log_level()
    run_logger = logging.getLogger(name)
    run_logger.setLevel(log_level)
    logging.getLogger("hf_unified_pretrain").setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    run_logger.warning(
        "Process rank: %s, device: %s, n_gpu: %s, distributed training: %s, 16-bits training: fp16=%s bf16=%s",
        training_args.local_process_index,
        training_args.device,
        training_args.n_gpu,
        training_args.parallel_mode.value == "distributed",
        training_args.fp16,
        training_args.bf16,
    )
    run_logger.info("Training/evaluation parameters %s", training_args)
    return run_logger


_CHECKPOINT_FOLDER = re.compile(r"^checkpoint-(\d+)$")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TORCH_ZIP_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "training_args.bin")


def _safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is unreadable (truncated, bad header), or None; reads only its header."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            header_length = struct.unpack("<Q", handle.read(8))[0]
            if header_length > size - 8:
                return f"{path} is truncated ({size} bytes, shorter than its {header_length}-byte header)"
            header = json.loads(handle.read(header_length))
    except (struct.error, ValueError) as error:
        return f"{path} has no valid safetensors header ({error})"
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if size != 8 + header_length + end:
        return f"{path} is truncated or padded ({size} bytes, its header describes {8 + header_length + end})"
    return None


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why a Trainer checkpoint folder cannot be resumed, or None when it looks complete.

    The Trainer writes `trainer_state.json` last, so a folder without it was interrupted while saving. Weights are
    checked by their safetensors headers (sizes must match), `.pt`/`.pth`/`.bin` files by their zip directory
    (at their end, so truncation shows). Nothing is loaded.

    Args:
        folder: A `checkpoint-<step>` folder.

    Returns:
        A sentence naming the missing or broken file, or None.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder} does not exist"
    state = folder / "trainer_state.json"
    if not state.is_file():
        return f"{state} is missing (the save was interrupted: the Trainer writes it last)"
    try:
        json.loads(state.read_text())
    except ValueError as error:
        return f"{state} is not valid JSON ({error})"
    weights = [folder / name for name in _WEIGHT_FILES if (folder / name).is_file()]
    if not weights:
        return f"{folder} holds no model weights (none of {', '.join(_WEIGHT_FILES)})"
    for index in (path for path in weights if path.name.endswith(".index.json")):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError) as error:
            return f"{index} is not a valid weight index ({error})"
        missing = sorted(name for name in shards if not (folder / name).is_file())
        if missing:
            return f"{folder} lacks the weight shards {missing} listed in {index.name}"
    for path in sorted(folder.glob("*.safetensors")):
        problem = _safetensors_problem(path)
        if problem:
            return problem
    torch_files = [
        *(folder / name for name in _TORCH_ZIP_FILES),
        *folder.glob("*.pth"),
        *folder.glob("pytorch_model*.bin"),
    ]
    for path in torch_files:
        if path.is_file() and not zipfile.is_zipfile(path):
            return f"{path} is truncated or corrupt (not a complete torch.save archive)"
    return None


def _checkpoints_newest_first(output_dir: Path) -> list[Path]:
    found = [path for path in output_dir.iterdir() if path.is_dir() and _CHECKPOINT_FOLDER.match(path.name)]
    return sorted(found, key=lambda path: int(_CHECKPOINT_FOLDER.match(path.name).group(1)), reverse=True)


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-<step>` folder of `output_dir` that `checkpoint_problem` accepts (None if none).

    Incomplete newer folders (a run killed while saving) are skipped with a warning naming the broken file.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    for folder in _checkpoints_newest_first(output_dir):
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        logger.warning("Skipping incomplete checkpoint %s: %s.", folder, problem)
    return None


def detect_last_checkpoint(training_args: TrainingArguments) -> str | None:
    """The newest complete `checkpoint-<step>` folder in `output_dir` when training, else None (logged clearly)."""
    output_dir = Path(training_args.output_dir)
    if not training_args.do_train or not output_dir.is_dir():
        return None
    last = last_complete_checkpoint(output_dir)
    if last is not None:
        logger.info(
            "Checkpoint detected, resuming training from %s. To start from scratch, pass another --output_dir or "
            "delete this folder.",
            last,
        )
    elif any(output_dir.iterdir()):
        logger.warning(
            "Output directory %s is not empty but holds no complete checkpoint-<step> folder: training starts from "
            "scratch and may overwrite its files.",
            output_dir,
        )
    return last


def resolve_resume_checkpoint(training_args: TrainingArguments) -> str | None:
    """The checkpoint to resume from: `--resume_from_checkpoint <path>`, `last` (newest in output_dir) or auto.

    Without `--resume_from_checkpoint` the newest complete checkpoint in `output_dir` is resumed automatically (as
    the official example scripts do, but skipping folders left half-written by an interrupted save). The result is
    also stored in `training_args.resume_from_checkpoint`, where callbacks (e.g. `EMACallback`) look for it.

    Raises:
        FileNotFoundError: an explicit path does not exist, or `last` finds no complete checkpoint.
        ValueError: an explicit checkpoint is incomplete or truncated (the message names the file).
    """
    requested = training_args.resume_from_checkpoint
    if requested in _RESUME_LAST:
        resolved = last_complete_checkpoint(training_args.output_dir)
        if resolved is None:
            raise FileNotFoundError(
                f"--resume_from_checkpoint {requested} found no complete checkpoint-<step> folder in "
                f"{training_args.output_dir} (incomplete ones are logged above)."
            )
    elif requested is not None:
        if not os.path.isdir(requested):
            raise FileNotFoundError(
                f"--resume_from_checkpoint {requested} does not exist: pass a checkpoint-<step> folder written by the "
                "Trainer, or 'last' for the newest one in --output_dir."
            )
        problem = checkpoint_problem(requested)
        if problem is not None:
            raise ValueError(
                f"Cannot resume from {requested}: {problem}. Pass an earlier checkpoint-<step> folder, or 'last' for "
                "the newest complete one."
            )
        resolved = requested
    else:
        resolved = detect_last_checkpoint(training_args)
    training_args.resume_from_checkpoint = resolved
    return resolved


def _parse_override_value(raw: str, current: object) -> object:
    if raw.lower() in ("none", "null"):
        return None
    if isinstance(current, bool) or (current is None and raw.lower() in ("true", "false")):
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"Expected true/false, got {raw!r}.")
        return raw.lower() in ("true", "1")
    for kind in (int, float):
        if isinstance(current, kind) or current is None:
            try:
                return kind(raw)
            except ValueError:
                if current is not None:
                    raise
    if isinstance(current, (list, tuple)):
        return type(current)(_parse_override_value(item, current[0] if current else None) for item in raw.split(":"))
    return raw


def _reason(error: Exception) -> str:
    # huggingface_hub's strict-dataclass errors wrap the validator's own message (which names the field).
    return str(error.__cause__) if isinstance(error, StrictDataclassError) and error.__cause__ else str(error)


def _override_items(overrides: str) -> list[tuple[str, str]]:
    """`"key=value,key=value"` as (key, raw value) pairs; an item without `=` is an error."""
    items = []
    for item in filter(None, (part.strip() for part in overrides.split(","))):
        key, separator, raw = item.partition("=")
        if not separator:
            raise ValueError(f"Config override {item!r} is not of the form key=value.")
        items.append((key.strip(), raw))
    return items


def apply_config_overrides(config: PreTrainedConfig, overrides: str) -> PreTrainedConfig:
    """Applies `"key=value,key=value"` to a config, like `update_from_string`, but also for fields that are None.

    Values are parsed by the field's current type; for a None field, as bool, int, float, then string. `none`
    sets None; list fields take `a:b:c`. Unknown keys are an error (a typo would otherwise be silently ignored).
    The config's validators run again afterwards, so an inconsistent combination fails here, not at save time.
    """
    for key, raw in _override_items(overrides):
        if not hasattr(config, key):
            raise ValueError(f"Config override for unknown field {key!r} of {type(config).__name__}.")
        try:
            setattr(config, key, _parse_override_value(raw, getattr(config, key)))
        except (ValueError, TypeError, StrictDataclassError) as error:
            raise ValueError(
                f"--config_overrides {key}={raw}: invalid value for field {key!r}: {_reason(error)}"
            ) from error
    if hasattr(config, "validate"):
        try:
            config.validate()
        except (ValueError, TypeError, StrictDataclassError) as error:
            raise ValueError(
                f"--config_overrides {overrides!r} makes an invalid {type(config).__name__}: {_reason(error)}"
            ) from error
    return config


def end_distributed() -> None:
    """Tears the process group down before the interpreter exits (the run scripts' last step).

    Left to interpreter shutdown, gloo's worker threads can abort a finished process ("terminate called without an
    active exception", SIGABRT), which fails an `accelerate launch` whose training had completed.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def preset_config(
    config_class: type[PreTrainedConfig], preset: str, overrides: str | None = None, **fields: Any
) -> PreTrainedConfig:
    """`config_class.from_preset(preset, **fields)` with `--config_overrides` given at construction.

    The overrides are typed against the preset's values (as `apply_config_overrides` types them) and win over
    `fields`; then the config is built once with every value, so what a config derives at construction (e.g. M3I's
    feature stride and grid from `feature_stage` and `image_size`) follows the overrides instead of the preset.
    """
    if not overrides:
        return config_class.from_preset(preset, **fields)
    typed = apply_config_overrides(config_class.from_preset(preset), overrides)  # parses, types and checks them
    values = {key: getattr(typed, key) for key, _ in _override_items(overrides)}
    return config_class.from_preset(preset, **{**fields, **values})


def build_config(model_args: ModelArguments) -> PreTrainedConfig:
    """Config from `--config_name`, `--model_name_or_path` or `--model_type` (+ `--config_overrides`)."""
    hub_kwargs = {"cache_dir": model_args.cache_dir, "revision": model_args.model_revision, "token": model_args.token}
    if model_args.config_name:
        config = AutoConfig.from_pretrained(model_args.config_name, **hub_kwargs)
    elif model_args.model_name_or_path:
        config = AutoConfig.from_pretrained(model_args.model_name_or_path, **hub_kwargs)
    elif model_args.model_type:
        config = AutoConfig.for_model(model_args.model_type)
        logger.info("Training a new %s model from scratch.", model_args.model_type)
    else:
        raise ValueError("Pass --model_name_or_path, --config_name or --model_type to say which model to train.")
    if model_args.config_overrides:
        logger.info("Overriding config: %s", model_args.config_overrides)
        apply_config_overrides(config, model_args.config_overrides)
    if model_args.teacher_name_or_path is not None and hasattr(config, "teacher_name_or_path"):
        config.teacher_name_or_path = model_args.teacher_name_or_path
    return config


def build_pretraining_model(
    model_args: ModelArguments, config: PreTrainedConfig, auto_class: type = AutoModelForPreTraining
) -> PreTrainedModel:
    """The pre-training model: loaded from `--model_name_or_path`, else freshly initialised from `config`."""
    if model_args.model_name_or_path:
        return auto_class.from_pretrained(
            model_args.model_name_or_path,
            config=config,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            token=model_args.token,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        )
    return auto_class.from_config(config)


def attach_frozen_teacher(
    model: PreTrainedModel,
    model_args: ModelArguments,
    input_mean: Sequence[float],
    input_std: Sequence[float],
    target_grid: int | Sequence[int] | None = None,
) -> PreTrainedModel:
    """Loads the frozen teacher named by `--teacher_name_or_path` (or the config) and attaches it to `model`.

    Args:
        model: a model with `set_teacher` (see `TeacherHolderMixin`).
        input_mean / input_std: the normalisation of the student's pixels (undone by the teacher).
        target_grid: teacher patch grid; default the student's `image_size // patch_size` when the config has both.

    Returns:
        `model`, with the teacher attached outside its module tree.
    """
    from ..teachers import FrozenTeacher

    path = model_args.teacher_name_or_path or getattr(model.config, "teacher_name_or_path", None)
    if not path:
        raise ValueError(
            f"{type(model).__name__} needs a teacher: pass --teacher_name_or_path <local folder with config.json and "
            "model.safetensors>."
        )
    if not hasattr(model, "set_teacher"):
        raise ValueError(f"{type(model).__name__} has no `set_teacher`: it does not train against a teacher.")
    if target_grid is None:
        image_size, patch_size = getattr(model.config, "image_size", None), getattr(model.config, "patch_size", None)
        if isinstance(image_size, int) and isinstance(patch_size, int):
            target_grid = image_size // patch_size
    teacher = FrozenTeacher.from_pretrained(
        path,
        model_class=model_args.teacher_model_class,
        feature=model_args.teacher_feature,
        target_grid=target_grid,
        input_mean=input_mean,
        input_std=input_std,
    )
    model.set_teacher(teacher)
    if hasattr(model.config, "teacher_name_or_path"):
        model.config.teacher_name_or_path = str(path)
    logger.info(
        "Attached frozen teacher %s (%d-d features on a %s grid).", path, teacher.feature_dim, teacher.grid_size
    )
    return model
