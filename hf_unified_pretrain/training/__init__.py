"""Training utilities shared by every run script: arguments, the pre-training Trainer, callbacks, plots.

Models are reached only through configs and the transformers Auto classes.
"""

from .arguments import (
    BASE_LEARNING_RATE_BATCH_SIZE,
    DataArguments,
    ModelArguments,
    PretrainingArguments,
    parse_args_or_json,
    script_description,
)
from .callbacks import LOSS_CURVE_NAME, KNNCallback, LossCurveCallback
from .pipeline import (
    build_model_and_processor,
    build_trainer,
    draw_feature_prediction,
    draw_pixel_reconstruction,
    first_batch,
    prepare_datasets,
    train_and_save,
    write_model_card,
    write_visualisation,
)
from .plots import plot_loss_curves, plot_reconstruction
from .script_utils import (
    attach_frozen_teacher,
    build_config,
    build_pretraining_model,
    detect_last_checkpoint,
    end_distributed,
    resolve_resume_checkpoint,
    setup_logging,
)
from .trainer import LOSS_PART_PREFIX, PretrainingTrainer, build_parameter_groups

__all__ = [
    "BASE_LEARNING_RATE_BATCH_SIZE",
    "LOSS_CURVE_NAME",
    "LOSS_PART_PREFIX",
    "DataArguments",
    "KNNCallback",
    "LossCurveCallback",
    "ModelArguments",
    "PretrainingArguments",
    "PretrainingTrainer",
    "attach_frozen_teacher",
    "build_config",
    "build_model_and_processor",
    "build_parameter_groups",
    "build_pretraining_model",
    "build_trainer",
    "detect_last_checkpoint",
    "draw_feature_prediction",
    "draw_pixel_reconstruction",
    "end_distributed",
    "first_batch",
    "parse_args_or_json",
    "plot_loss_curves",
    "plot_reconstruction",
    "prepare_datasets",
    "resolve_resume_checkpoint",
    "script_description",
    "setup_logging",
    "train_and_save",
    "write_model_card",
    "write_visualisation",
]
