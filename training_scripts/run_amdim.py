#!/usr/bin/env python
r"""Pre-train AMDIM: NCE between the global and local features of two augmented views (1→5, 1→7, 5→5).

Each image gives two views (`TwoViewTransform`, AMDIM's recipe for the encoder size); when the dataset has labels
(`--label_column`, default "label" when present) the original's online MLP / linear classifiers train on the detached
global features and their accuracy is logged (`train_accuracy_mlp`, `train_accuracy_linear`).

Examples:

    # tiny 32-px model on the embedded photographs
    python training_scripts/run_amdim.py --preset tiny --output_dir outputs/amdim-tiny --do_train --max_steps 50 \
        --per_device_train_batch_size 32

    # CIFAR-10 (JPEG archive folder), the authors' optimiser (Adam, betas 0.8/0.999, 500-step warm-up)
    python training_scripts/run_amdim.py training_scripts/configs/amdim_cifar10.json

    # 2 processes (negatives gathered from both)
    accelerate launch --num_processes 2 training_scripts/run_amdim.py training_scripts/configs/amdim_cifar10.json

Any flag of `transformers.TrainingArguments` works; a single `.json` recipe may replace the command line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from transformers import set_seed

import hf_unified_pretrain  # noqa: F401  (registers the model types with the Auto classes)
from hf_unified_pretrain.data import (
    SkippedImagesCallback,
    TwoViewCollator,
    TwoViewTransform,
    attach_transforms,
    load_cifar10_jpeg,
    load_pretraining_dataset,
)
from hf_unified_pretrain.models.amdim import AMDIM_PRESETS, AMDIMConfig, AMDIMImageProcessor
from hf_unified_pretrain.training import (
    DataArguments,
    LossCurveCallback,
    ModelArguments,
    PretrainingArguments,
    PretrainingTrainer,
    build_model_and_processor,
    end_distributed,
    parse_args_or_json,
    resolve_resume_checkpoint,
    script_description,
    setup_logging,
    train_and_save,
    write_model_card,
)
from hf_unified_pretrain.training.trainer import _LossPartAverager

METRIC_PREFIX = "train_"


@dataclass
class AMDIMArguments:
    """AMDIM-specific choices of this script (everything that changes the model itself lives in `AMDIMConfig`)."""

    preset: str | None = field(
        default=None,
        metadata={"help": "Start from an AMDIMConfig preset: tiny, default, medium, large, cifar10 (no checkpoint)."},
    )
    cifar10_root: str | None = field(
        default=None,
        metadata={"help": "Folder holding cifar10_jpeg.tar.gz: train on CIFAR-10 (test split for evaluation)."},
    )
    label_column: str | None = field(
        default="auto",
        metadata={"help": "Column of class labels for the online classifiers; 'auto': 'label' when present; none."},
    )
    model_card: bool = field(default=True, metadata={"help": "Write README.md (model card) into output_dir."})


class AMDIMTrainer(PretrainingTrainer):
    """`PretrainingTrainer` that also logs the model's `metrics` (online classifier accuracies) during training."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._train_metrics = _LossPartAverager()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        metrics = outputs.get("metrics") if hasattr(outputs, "get") else None
        if metrics and model.training:
            self._train_metrics.add(metrics)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and not any(key.startswith("eval_") for key in logs):
            logs.update(self._train_metrics.pop_means(self, METRIC_PREFIX))
        super().log(logs, start_time)


def _load_data(data_args: DataArguments, model_args: ModelArguments, training_args, amdim_args: AMDIMArguments):
    with training_args.main_process_first(desc="loading the dataset"):
        if amdim_args.cifar10_root:
            splits = ("train", "test") if training_args.do_eval else ("train",)
            raw = load_cifar10_jpeg(amdim_args.cifar10_root, model_args.cache_dir, splits=splits)
            if "test" in raw:
                raw["validation"] = raw.pop("test")
            for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
                if limit is not None and split in raw:
                    raw[split] = raw[split].shuffle(seed=training_args.seed).select(range(limit))
        else:
            raw = load_pretraining_dataset(**data_args.loading_kwargs(training_args.seed, model_args.cache_dir))
    return raw


def _label_column(raw, requested: str | None) -> str | None:
    columns = set(getattr(raw["train"], "column_names", None) or [])
    if requested in (None, "none", ""):
        return None
    if requested == "auto":
        return "label" if "label" in columns else None
    if requested not in columns:
        raise ValueError(f"--label_column {requested!r} is not a column of the training data ({sorted(columns)}).")
    return requested


def main(args: list[str] | None = None) -> dict[str, Any]:
    model_args, data_args, training_args, amdim_args = parse_args_or_json(
        (ModelArguments, DataArguments, PretrainingArguments, AMDIMArguments),
        args,
        description=script_description(__doc__, AMDIM_PRESETS),
    )
    logger = setup_logging(training_args, "run_amdim")
    resume_from = resolve_resume_checkpoint(training_args)
    set_seed(training_args.seed)  # before the model is built: --seed fixes the initial weights too

    model, image_processor = build_model_and_processor(
        model_args,
        config_class=AMDIMConfig,
        processor_class=AMDIMImageProcessor,
        preset=amdim_args.preset,
        image_size=data_args.image_size,
    )
    config = model.config
    if not (model_args.image_processor_name or model_args.model_name_or_path):
        # The original's evaluation pre-processing and normalisation for this encoder size.
        image_processor = AMDIMImageProcessor.for_image_size(config.image_size)

    raw = _load_data(data_args, model_args, training_args, amdim_args)
    label_column = _label_column(raw, amdim_args.label_column)
    transform = TwoViewTransform.amdim_recipe(
        config.image_size,
        image_mean=image_processor.image_mean,
        image_std=image_processor.image_std,
        flip_probability=0.5 if data_args.horizontal_flip else 0.0,
    )
    keep = [label_column] if label_column else []
    datasets, skipped = attach_transforms(raw, transform, transform, keep_columns=keep)
    if label_column is None:
        logger.info("No label column: the online evaluation classifiers are not trained.")

    trainer = AMDIMTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets["train"] if training_args.do_train else None,
        eval_dataset=datasets.get("validation") if training_args.do_eval else None,
        data_collator=TwoViewCollator(label_column=label_column),
        processing_class=image_processor,
        callbacks=[LossCurveCallback(), SkippedImagesCallback(skipped)],
    )
    metrics = train_and_save(trainer, resume_from)
    if amdim_args.model_card:
        write_model_card(
            trainer,
            data_args,
            metrics,
            method="amdim",
            size=amdim_args.preset or "custom",
            recipe={
                "encoder": f"{config.image_size} px, ndf {config.ndf}, n_rkhs {config.n_rkhs}, depth {config.n_depth}",
                "online classifiers": f"on column {label_column!r}" if label_column else "off (no labels)",
                **({"data": f"CIFAR-10 ({amdim_args.cifar10_root})"} if amdim_args.cifar10_root else {}),
            },
        )
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
    end_distributed()
