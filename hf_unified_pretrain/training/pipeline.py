"""The steps every pre-training run script shares around its method-specific model set-up: data with transforms,
the Trainer, and what is written at the end (weights, processor, metrics, loss curve, reconstruction, model card).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from datasets import DatasetDict, IterableDatasetDict
from transformers import BaseImageProcessor, PreTrainedModel, TrainerCallback

from ..data import (
    EvalTransform,
    MaskedImageCollator,
    PretrainingTransform,
    SkippedImageCounter,
    SkippedImagesCallback,
    attach_transforms,
    load_pretraining_dataset,
)
from .arguments import DataArguments, ModelArguments, PretrainingArguments
from .callbacks import LossCurveCallback
from .trainer import PretrainingTrainer

logger = logging.getLogger(__name__)


def prepare_datasets(
    data_args: DataArguments,
    model_args: ModelArguments,
    training_args: PretrainingArguments,
    image_processor: BaseImageProcessor,
    image_size: int,
    teacher_normalization: tuple[Sequence[float], Sequence[float], int] | None = None,
) -> tuple[DatasetDict | IterableDatasetDict, SkippedImageCounter]:
    """Loads the training data (dataset name, image folder or the embedded default) and attaches the transforms.

    Args:
        data_args / model_args / training_args: The parsed run-script arguments.
        image_processor: Gives the student's normalisation.
        image_size: Square training crop size.
        teacher_normalization: `(mean, std, size)` of a frozen teacher: the transforms then also return
            `teacher_pixel_values`, the same crop normalised for the teacher.

    Returns:
        The datasets with lazy transforms, and the counter of unreadable images skipped.
    """
    with training_args.main_process_first(desc="loading the dataset"):
        raw = load_pretraining_dataset(**data_args.loading_kwargs(training_args.seed, model_args.cache_dir))
    teacher_kwargs = {}
    if teacher_normalization is not None:
        mean, std, size = teacher_normalization
        teacher_kwargs = dict(teacher_image_mean=mean, teacher_image_std=std, teacher_image_size=size)
    common = dict(image_size=image_size, image_mean=image_processor.image_mean, image_std=image_processor.image_std)
    train_transform = PretrainingTransform(
        **common, **teacher_kwargs, scale=(data_args.crop_min_scale, 1.0), hflip=data_args.horizontal_flip
    )
    eval_transform = EvalTransform(**common, **teacher_kwargs)
    return attach_transforms(raw, train_transform, eval_transform)


def build_trainer(
    model: PreTrainedModel,
    training_args: PretrainingArguments,
    datasets: DatasetDict | IterableDatasetDict,
    collator: MaskedImageCollator,
    image_processor: BaseImageProcessor,
    skipped: SkippedImageCounter,
    callbacks: Sequence[TrainerCallback] = (),
) -> PretrainingTrainer:
    """The pre-training Trainer with the loss-curve and skipped-image callbacks."""
    return PretrainingTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets["train"] if training_args.do_train else None,
        eval_dataset=datasets.get("validation") if training_args.do_eval else None,
        data_collator=collator,
        processing_class=image_processor,
        callbacks=[LossCurveCallback(), SkippedImagesCallback(skipped), *callbacks],
    )


def train_and_save(trainer: PretrainingTrainer, resume_from_checkpoint: str | None) -> dict[str, float]:
    """Trains (resuming when asked), saves weights + processor + state, evaluates; returns the final metrics."""
    metrics: dict[str, float] = {}
    args = trainer.args
    if args.do_train:
        result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
        trainer.save_model()
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        metrics.update(result.metrics)
    if args.do_eval and trainer.eval_dataset is not None:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    return metrics


@torch.no_grad()
def first_batch(trainer: PretrainingTrainer, split: str = "eval") -> dict[str, torch.Tensor]:
    """One collated batch (validation when there is one, else training), on the model's device."""
    loader = trainer.get_eval_dataloader() if split == "eval" and trainer.eval_dataset is not None else None
    loader = loader or trainer.get_train_dataloader()
    batch = next(iter(loader))
    return {key: value.to(trainer.model.device) for key, value in batch.items()}


def write_visualisation(
    trainer: PretrainingTrainer, draw: Callable[[PreTrainedModel, dict[str, torch.Tensor], Path], Path]
) -> Path | None:
    """Draws the method's reconstruction figure on one batch into `output_dir` (main process only)."""
    if not trainer.is_world_process_zero():
        return None
    model = trainer.accelerator.unwrap_model(trainer.model)
    was_training = model.training
    model.eval()
    try:
        return draw(model, first_batch(trainer), Path(trainer.args.output_dir))
    finally:
        model.train(was_training)
