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
from .callbacks import KNNCallback, LossCurveCallback
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


# Sub-folder names of a `--knn_eval_dir` holding separate bank and query images.
_KNN_BANK_FOLDER = "train"
_KNN_QUERY_FOLDERS = ("test", "val", "validation")


def knn_callback_from_folder(
    folder: str | Path,
    image_processor: BaseImageProcessor,
    *,
    every_n_steps: int = 100,
    bank_size: int = 1000,
    query_size: int = 500,
) -> KNNCallback:
    """An online kNN callback on labelled images of a folder, preprocessed as the model's processor does.

    Args:
        folder: Either `train/` + `test/` (or `val/`, `validation/`) with one sub-folder per class (bank from
            `train/`, queries from the other), or one folder of class sub-folders (class-balanced: its first
            `bank_size` images are the bank, the next `query_size` the queries).
        image_processor: Gives the input size, mean and std (whole image resized, no crop).
        every_n_steps / bank_size / query_size: Evaluation period and subset sizes.
    """
    from ..evaluation import load_image_folder

    root = Path(folder)
    transform = EvalTransform.from_image_processor(image_processor, crop_pct=1.0)
    query_root = next((root / name for name in _KNN_QUERY_FOLDERS if (root / name).is_dir()), None)
    if (root / _KNN_BANK_FOLDER).is_dir() and query_root is not None:
        bank = load_image_folder(root / _KNN_BANK_FOLDER, transform, bank_size)
        queries = load_image_folder(query_root, transform, query_size, class_names=bank.class_names)
        bank_pixels, bank_labels = bank.pixel_values, bank.labels
        query_pixels, query_labels = queries.pixel_values, queries.labels
    else:
        images = load_image_folder(root, transform, bank_size + query_size)
        if len(images) <= bank_size:
            raise ValueError(
                f"--knn_eval_dir {str(root)!r} has {len(images)} images, not more than --knn_bank_size {bank_size}: "
                "no query image is left; lower --knn_bank_size or add train/ and test/ sub-folders."
            )
        bank_pixels, bank_labels = images.pixel_values[:bank_size], images.labels[:bank_size]
        query_pixels, query_labels = images.pixel_values[bank_size:], images.labels[bank_size:]
    return KNNCallback(bank_pixels, bank_labels, query_pixels, query_labels, every_n_steps=every_n_steps)


def add_knn_evaluation(trainer: PretrainingTrainer) -> KNNCallback | None:
    """Adds the online kNN callback that `--knn_eval_dir` asks for (first in the list, so the log line carries
    `knn_top1`); None when the flag is unset. Uses the trainer's image processor for the input size and
    normalisation."""
    args = trainer.args
    folder = getattr(args, "knn_eval_dir", None)
    if folder is None:
        return None
    processor = trainer.processing_class
    if processor is None or not hasattr(processor, "image_mean"):
        raise ValueError(
            "--knn_eval_dir needs the trainer's image processor (processing_class) to preprocess the kNN images."
        )
    callback = knn_callback_from_folder(
        folder,
        processor,
        every_n_steps=args.knn_eval_steps,
        bank_size=args.knn_bank_size,
        query_size=args.knn_query_size,
    )
    return callback.add_to(trainer)


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


def build_model_and_processor(
    model_args: ModelArguments,
    *,
    config_class: type,
    processor_class: type,
    preset: str | None = None,
    image_size: int | None = None,
    auto_class: type | None = None,
) -> tuple[PreTrainedModel, BaseImageProcessor]:
    """The pre-training model and its image processor, from a checkpoint, a config, a preset or the model type.

    Args:
        model_args: `--model_name_or_path` / `--config_name` / `--model_type`, `--config_overrides`, teacher path.
        config_class: The method's config class (its `from_preset` builds `preset`).
        processor_class: The method's image processor class (default when the checkpoint has none).
        preset: Preset name, used when no checkpoint or config is given.
        image_size: Training resolution overriding the config's.
        auto_class: Auto class of the model (default `AutoModelForPreTraining`).

    Returns:
        (model, image processor sized to the training resolution).
    """
    from transformers import AutoModelForPreTraining

    from ..models.registry import fit_image_processor
    from .script_utils import build_config, build_pretraining_model, preset_config

    if preset and not (model_args.model_name_or_path or model_args.config_name):
        config = preset_config(config_class, preset, model_args.config_overrides)
        if model_args.teacher_name_or_path and hasattr(config, "teacher_name_or_path"):
            config.teacher_name_or_path = model_args.teacher_name_or_path
    else:
        model_args.model_type = model_args.model_type or config_class.model_type
        config = build_config(model_args)
    if image_size is not None:
        config.image_size = image_size
    model = build_pretraining_model(model_args, config, auto_class or AutoModelForPreTraining)
    source = model_args.image_processor_name or model_args.model_name_or_path
    processor = processor_class.from_pretrained(source) if source else processor_class()
    return model, fit_image_processor(processor, config)  # resize and crop follow the config's image_size


_MODEL_INPUTS = ("pixel_values", "bool_masked_pos", "teacher_pixel_values")


def draw_pixel_reconstruction(model: PreTrainedModel, batch: dict[str, torch.Tensor], output_dir: Path) -> Path:
    """Original | masked | reconstruction | reconstruction + visible patches, for pixel-target models whose
    output `logits` are (B, N, p*p*C) patches. With `config.norm_pix_loss` the raw prediction and the per-patch
    normalised target are drawn too, beside the prediction de-normalised with each true patch's mean and spread
    (which looks plausible even for an untrained model); see `plots.reconstruction_panels`."""
    from .plots import plot_reconstruction

    outputs = model(**{key: value for key, value in batch.items() if key in _MODEL_INPUTS})
    return plot_reconstruction(
        batch["pixel_values"].float().cpu(),
        outputs.bool_masked_pos.cpu(),
        output_dir / "reconstruction.png",
        patch_size=model.config.patch_size,
        reconstruction=outputs.logits.float().cpu(),
        norm_pix_loss=bool(getattr(model.config, "norm_pix_loss", False)),
        title=f"{type(model).__name__}: masked patches reconstructed",
    )


def draw_feature_prediction(model: PreTrainedModel, batch: dict[str, torch.Tensor], output_dir: Path) -> Path:
    """Mask overlay and per-patch cosine similarity of predicted vs teacher features, for feature-target models."""
    from .plots import plot_reconstruction

    outputs = model(**{key: value for key, value in batch.items() if key in _MODEL_INPUTS})
    targets = getattr(outputs, "teacher_features", None)
    if targets is None:
        targets = model._run_teacher(batch["pixel_values"], batch.get("teacher_pixel_values"))
    return plot_reconstruction(
        batch["pixel_values"].float().cpu(),
        outputs.bool_masked_pos.cpu(),
        output_dir / "reconstruction.png",
        patch_size=model.config.patch_size,
        predictions=outputs.logits.float().cpu(),
        targets=targets.float().cpu(),
        title=f"{type(model).__name__}: cosine(prediction, teacher feature) per patch",
    )


def write_model_card(
    trainer: PretrainingTrainer,
    data_args: DataArguments,
    metrics: dict[str, float],
    *,
    method: str,
    size: str,
    recipe: dict | None = None,
) -> Path | None:
    """Renders the model card of the finished run into `output_dir/README.md` (main process, after training)."""
    from ..cards import render_model_card, save_model_card

    args = trainer.args
    if not (args.do_train and trainer.is_world_process_zero()):
        return None
    loss_curve = Path(args.output_dir) / "loss_curve.png"
    card = render_model_card(
        args.output_dir,
        method=method,
        size=size,
        training_recipe={
            "steps": trainer.state.global_step,
            "batch size (total)": args.total_train_batch_size,
            "learning rate": args.learning_rate,
            "data": data_args.dataset_name or data_args.train_dir or "embedded photographs (scikit-image)",
            **(recipe or {}),
        },
        results={key: value for key, value in metrics.items() if key in ("train_loss", "eval_loss")},
        loss_curve=loss_curve if loss_curve.exists() else None,
    )
    return save_model_card(card, args.output_dir)
