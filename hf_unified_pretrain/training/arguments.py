"""Command-line arguments shared by every `training_scripts/run_<method>.py`.

Three dataclasses parsed together by `HfArgumentParser` (the structure of transformers' `run_mae.py`):
`ModelArguments` (what to build), `DataArguments` (what to train on) and `PretrainingArguments` (how to train;
`TrainingArguments` plus `base_learning_rate`, `layer_decay` and pre-training defaults). `parse_args_or_json`
accepts either command-line flags or a single JSON recipe file (`python run_mvp.py configs/mvp_base.json`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import HfArgumentParser, SchedulerType, TrainingArguments
from transformers.training_args import OptimizerNames

from ..data.embedded import DEFAULT_NUM_EMBEDDED_IMAGES

logger = logging.getLogger(__name__)

# Batch size the "base" learning rate refers to (Goyal et al. linear scaling rule, as in MAE/BEiT recipes).
BASE_LEARNING_RATE_BATCH_SIZE = 256


@dataclass
class ModelArguments:
    """Which model to pre-train: from a checkpoint, a config, or a registered `model_type` with overrides."""

    model_type: str | None = field(
        default=None,
        metadata={"help": "Model type to build from scratch (e.g. mvp, itpn) when no model_name_or_path is given."},
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Checkpoint folder to start from. Leave unset to train from scratch."}
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Config folder/name if different from model_name_or_path."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Override config fields when training from scratch (--preset, --model_type or --config_name), "
            "e.g. 'hidden_size=384,num_hidden_layers=6,mask_ratio=0.6'. Values are parsed by the field's type; "
            "'none' sets None (also for fields that are None), lists are written a:b:c. Unknown fields and "
            "out-of-range values are errors naming the field."
        },
    )
    image_processor_name: str | None = field(
        default=None, metadata={"help": "Image processor folder/name if different from model_name_or_path."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Cache folder for downloaded models and `datasets` files."}
    )
    model_revision: str = field(default="main", metadata={"help": "Model revision (branch, tag or commit id)."})
    token: str | None = field(default=None, metadata={"help": "Hub token for private models."})
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Re-initialise weights whose shapes differ from the checkpoint."}
    )
    teacher_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Local folder of the frozen teacher (config.json + model.safetensors) for feature-target "
            "methods; recorded in the student's config. The Hub is not used."
        },
    )
    teacher_model_class: str = field(
        default="CLIPVisionModelWithProjection",
        metadata={"help": "transformers class (or Auto class) name used to load the teacher."},
    )
    teacher_feature: str = field(
        default="projected_patch_tokens",
        metadata={"help": "Teacher features: projected_patch_tokens, patch_tokens or last_hidden_state."},
    )

    def __post_init__(self) -> None:
        if self.config_overrides is not None and self.model_name_or_path is not None:
            raise ValueError(
                "--config_overrides only applies when training from scratch; drop it or drop --model_name_or_path."
            )


@dataclass
class DataArguments:
    """What to train on; field names match `hf_unified_pretrain.data.load_pretraining_dataset`."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "`datasets` name or local path. With neither this nor train_dir, the embedded default."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "`datasets` configuration name."})
    train_dir: str | None = field(default=None, metadata={"help": "Folder of training images (imagefolder)."})
    validation_dir: str | None = field(default=None, metadata={"help": "Folder of validation images."})
    streaming: bool = field(default=False, metadata={"help": "Read the dataset lazily (IterableDataset)."})
    image_column_name: str | None = field(
        default=None, metadata={"help": "Image column; default image, then img, then the first Image feature."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Truncate the training set to this many examples (debugging, quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Truncate the validation set to this many examples."}
    )
    train_val_split: float | None = field(
        default=0.15, metadata={"help": "Fraction of train split off as validation when there is none."}
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Training crop size; default: the model config's image_size."}
    )
    crop_min_scale: float = field(
        default=0.2, metadata={"help": "Smallest RandomResizedCrop area fraction (MAE uses 0.2, BEiT 0.08)."}
    )
    horizontal_flip: bool = field(default=True, metadata={"help": "Random horizontal flips."})
    embedded_num_images: int = field(
        default=DEFAULT_NUM_EMBEDDED_IMAGES, metadata={"help": "Number of crops of the embedded default dataset."}
    )

    def __post_init__(self) -> None:
        if self.dataset_name is not None and (self.train_dir is not None or self.validation_dir is not None):
            raise ValueError("Pass either --dataset_name or --train_dir/--validation_dir, not both.")
        if self.train_val_split is not None and not 0 <= self.train_val_split < 1:
            raise ValueError(f"--train_val_split must be in [0, 1), got {self.train_val_split}.")
        if not 0 < self.crop_min_scale <= 1:
            raise ValueError(f"--crop_min_scale must be in (0, 1], got {self.crop_min_scale}.")
        for name in ("image_size", "max_train_samples", "max_eval_samples", "embedded_num_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be at least 1 (or unset), got {value}.")

    def loading_kwargs(self, seed: int = 0, cache_dir: str | None = None) -> dict[str, Any]:
        """Keyword arguments for `load_pretraining_dataset` (`cache_dir` lives in `ModelArguments`, as in run_mae)."""
        return {
            "dataset_name": self.dataset_name,
            "dataset_config_name": self.dataset_config_name,
            "train_dir": self.train_dir,
            "validation_dir": self.validation_dir,
            "streaming": self.streaming,
            "image_column_name": self.image_column_name,
            "cache_dir": cache_dir,
            "max_train_samples": self.max_train_samples,
            "max_eval_samples": self.max_eval_samples,
            "train_val_split": self.train_val_split,
            "seed": seed,
            "embedded_num_images": self.embedded_num_images,
        }


def training_device_type(use_cpu: bool = False) -> str:
    """ "cpu" without an accelerator (or with `use_cpu`), else the accelerator's type ("cuda", "mps", "xpu", ...)."""
    if use_cpu or not torch.accelerator.is_available():
        return "cpu"
    return torch.accelerator.current_accelerator().type


def fused_adamw_available(device_type: str) -> bool:
    """Whether this torch build has the fused AdamW kernel for `device_type` (tried on a one-element parameter)."""
    try:
        parameter = torch.zeros(1, device=device_type, requires_grad=True)
        torch.optim.AdamW([parameter], fused=True)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


@dataclass
class PretrainingArguments(TrainingArguments):
    """`TrainingArguments` with pre-training defaults, a scaled base learning rate and layer-wise LR decay.

    Defaults differing from `TrainingArguments`: `remove_unused_columns=False` (the `set_transform` pattern needs
    the raw image column), `label_names=["pixel_values"]` (label-free models otherwise get no `eval_loss`),
    `prediction_loss_only=True` (evaluation never gathers predictions/hidden states), `weight_decay=0.05`,
    `adam_beta2=0.95` (MAE/BEiT), cosine schedule. The fused AdamW (`--optim adamw_torch_fused`, transformers'
    default) falls back to `adamw_torch` where the device has no fused kernel, and `dataloader_pin_memory` is
    turned off without an accelerator (it only speeds up host-to-accelerator copies).
    """

    base_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate per 256 images: learning_rate = base_learning_rate * total_batch_size / 256, "
            "total_batch_size = per-device batch x devices x gradient accumulation. Overrides --learning_rate."
        },
    )
    layer_decay: float | None = field(
        default=None,
        metadata={
            "help": "Layer-wise LR decay in (0, 1]: a parameter with layer id i (the model's "
            "get_layer_id_for_lr_decay: 0 = embeddings ... L - 1 = head, L = model.num_lr_decay_layers) gets "
            "lr * layer_decay ** (L - 1 - i), so the head trains at lr. Unset: off."
        },
    )
    stop_on_non_finite_loss: bool = field(
        default=True,
        metadata={
            "help": "Stop with an error naming the loss part when a logged loss part is NaN or infinite (checked "
            "every logging_steps). False: keep training."
        },
    )
    knn_eval_dir: str | None = field(
        default=None,
        metadata={
            "help": "Labelled images for online kNN accuracy during pre-training: a folder with train/ and test/ "
            "(or val/) class sub-folders (bank from train/, queries from test/), or one folder of class "
            "sub-folders (split into bank and queries). Every --knn_eval_steps steps the model's frozen pooled "
            "features are classified (weighted kNN, k=20, T=0.07) and knn_top1 / knn_top5 are logged beside the "
            "loss. Unset: off."
        },
    )
    knn_eval_steps: int = field(default=100, metadata={"help": "Optimiser steps between two online kNN evaluations."})
    knn_bank_size: int = field(
        default=1000, metadata={"help": "Labelled reference images of the online kNN (class-balanced subset)."}
    )
    knn_query_size: int = field(
        default=500, metadata={"help": "Images classified by the online kNN (class-balanced subset)."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep raw columns: transforms are applied lazily with set_transform."}
    )
    label_names: list[str] | None = field(
        default_factory=lambda: ["pixel_values"],
        metadata={"help": "Input keys treated as labels; pixel_values makes label-free models report eval_loss."},
    )
    prediction_loss_only: bool = field(
        default=True, metadata={"help": "Evaluation returns only the losses (no predictions gathered)."}
    )
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay (not on biases/norms/tokens)."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2 (0.95 in MAE/BEiT pre-training)."})
    lr_scheduler_type: SchedulerType | str = field(default="cosine", metadata={"help": "Learning-rate schedule."})

    def __post_init__(self) -> None:
        super().__post_init__()
        device_type = training_device_type(self.use_cpu)
        if device_type == "cpu" and self.dataloader_pin_memory:
            # Pinned memory only speeds up copies to an accelerator; without one the DataLoader warns every run.
            self.dataloader_pin_memory = False
        if self.optim == OptimizerNames.ADAMW_TORCH_FUSED and not fused_adamw_available(device_type):
            logger.info("Fused AdamW is not available on %s: using --optim adamw_torch.", device_type)
            self.optim = OptimizerNames.ADAMW_TORCH
        for name in ("knn_eval_steps", "knn_bank_size", "knn_query_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if self.knn_eval_dir is not None and not Path(self.knn_eval_dir).is_dir():
            raise FileNotFoundError(
                f"--knn_eval_dir {self.knn_eval_dir!r} is not a folder: pass a folder of class sub-folders (or with "
                "train/ and test/ class folders)."
            )
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise ValueError(f"--layer_decay must be in (0, 1], got {self.layer_decay}.")
        if self.base_learning_rate is not None:
            if self.base_learning_rate <= 0:
                raise ValueError(f"--base_learning_rate must be positive, got {self.base_learning_rate}.")
            self.learning_rate = self.base_learning_rate * self.total_train_batch_size / BASE_LEARNING_RATE_BATCH_SIZE
            logger.info(
                "learning_rate = base_learning_rate %g x total batch %d / %d = %g",
                self.base_learning_rate,
                self.total_train_batch_size,
                BASE_LEARNING_RATE_BATCH_SIZE,
                self.learning_rate,
            )

    @property
    def total_train_batch_size(self) -> int:
        """Images per optimiser step: per-device batch × devices × gradient accumulation steps."""
        return self.train_batch_size * self.gradient_accumulation_steps * self.world_size


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults (as HfArgumentParser does) and keeps the description's own line breaks (examples)."""


def script_description(doc: str, presets: Iterable[str] = ()) -> str:
    """A run script's `--help` text: its module docstring, then the names of its presets.

    Args:
        doc: The script's `__doc__` (what it does, examples).
        presets: Names accepted by `--preset`.
    """
    text = doc.strip()
    names = sorted(presets)
    if names:
        text += f"\n\nPresets (--preset NAME): {', '.join(names)}."
    return text


def parse_args_or_json(
    dataclass_types: Sequence[type] = (ModelArguments, DataArguments, PretrainingArguments),
    args: Sequence[str] | None = None,
    description: str | None = None,
) -> tuple[Any, ...]:
    """Parses command-line flags, or a single `.json` recipe file given as the only argument.

    Args:
        dataclass_types: the dataclasses to fill, in the order they are returned.
        args: the argument list (default: `sys.argv[1:]`).
        description: what `--help` shows first (see `script_description`), under a one-line usage.

    Returns:
        One instance per dataclass type. Unknown keys in a JSON recipe are an error (typos do not pass silently).
    """
    args = list(sys.argv[1:] if args is None else args)
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "run_script.py"
    parser = HfArgumentParser(
        tuple(dataclass_types),
        description=description,
        # the full usage lists every TrainingArguments flag: keep it to one line so that --help opens with the
        # description
        usage=f"{program} [--flag value ...] | {program} recipe.json",
        formatter_class=_HelpFormatter,
    )
    if len(args) == 1 and args[0].endswith(".json"):
        recipe = Path(args[0])
        if not recipe.is_file():
            raise FileNotFoundError(f"Recipe {str(recipe)!r} not found.")
        return parser.parse_json_file(json_file=str(recipe.resolve()), allow_extra_keys=False)
    return parser.parse_args_into_dataclasses(args=args)
