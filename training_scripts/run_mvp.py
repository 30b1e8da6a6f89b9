#!/usr/bin/env python
r"""Pre-train MVP: a BEiT-style ViT whose block-masked patches predict a frozen CLIP vision teacher's patch features.

Examples:

    # tiny model on the embedded photographs, teacher from a local CLIP folder (its projection is 512-d)
    python training_scripts/run_mvp.py --preset tiny --teacher_name_or_path ./clip-vit-base-patch16 \
        --config_overrides teacher_dim=512 --output_dir outputs/mvp-tiny --do_train --max_steps 50 \
        --per_device_train_batch_size 8

    # ViT-B/16 on your images, 8 GPUs (see the README for multi-node)
    accelerate launch --num_processes 8 training_scripts/run_mvp.py training_scripts/configs/mvp_base_in1k.json

Any flag of `transformers.TrainingArguments` works; a single `.json` recipe may replace the command line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import SimpleNamespace

from transformers import set_seed

import hf_unified_pretrain  # noqa: F401  (registers the model types with the Auto classes)
from hf_unified_pretrain.data import MaskedImageCollator
from hf_unified_pretrain.models.mvp import MVP_PRESETS, MVPConfig, MVPImageProcessor
from hf_unified_pretrain.training import (
    DataArguments,
    ModelArguments,
    PretrainingArguments,
    attach_frozen_teacher,
    build_model_and_processor,
    build_trainer,
    draw_feature_prediction,
    end_distributed,
    parse_args_or_json,
    prepare_datasets,
    resolve_resume_checkpoint,
    script_description,
    setup_logging,
    train_and_save,
    write_model_card,
    write_visualisation,
)


@dataclass
class MVPArguments:
    """MVP-specific choices of this script (everything that changes the model itself lives in `MVPConfig`)."""

    preset: str | None = field(
        default=None,
        metadata={"help": "Start from an MVPConfig preset: tiny, base or large (ignored with a checkpoint)."},
    )
    model_card: bool = field(default=True, metadata={"help": "Write README.md (model card) into output_dir."})


def setup(args: list[str] | None = None) -> SimpleNamespace:
    """Everything before training: arguments, logging, seeding, model + teacher, data and the Trainer.

    The seed is set before the model is built, so `--seed` fixes the initial weights as well as the data order,
    the masks and dropout.
    """
    model_args, data_args, training_args, mvp_args = parse_args_or_json(
        (ModelArguments, DataArguments, PretrainingArguments, MVPArguments),
        args,
        description=script_description(__doc__, MVP_PRESETS),
    )
    logger = setup_logging(training_args, "run_mvp")
    resume_from = resolve_resume_checkpoint(training_args)
    set_seed(training_args.seed)

    model, image_processor = build_model_and_processor(
        model_args,
        config_class=MVPConfig,
        processor_class=MVPImageProcessor,
        preset=mvp_args.preset,
        image_size=data_args.image_size,
    )
    config = model.config
    attach_frozen_teacher(model, model_args, image_processor.image_mean, image_processor.image_std)

    image_size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    datasets, skipped = prepare_datasets(data_args, model_args, training_args, image_processor, image_size)
    mask_generator = model.mask_generator()
    collator = MaskedImageCollator(mask_generator, seed=training_args.seed)
    trainer = build_trainer(model, training_args, datasets, collator, image_processor, skipped)
    return SimpleNamespace(
        trainer=trainer,
        resume_from=resume_from,
        logger=logger,
        data_args=data_args,
        mvp_args=mvp_args,
        mask_generator=mask_generator,
    )


def main(args: list[str] | None = None) -> dict[str, float]:
    run = setup(args)
    trainer, config = run.trainer, run.trainer.model.config
    metrics = train_and_save(trainer, run.resume_from)

    figure = write_visualisation(trainer, draw_feature_prediction)
    if figure is not None:
        run.logger.info("Prediction map written to %s", figure)
    if run.mvp_args.model_card:
        write_model_card(
            trainer,
            run.data_args,
            metrics,
            method="mvp",
            size=run.mvp_args.preset or "custom",
            recipe={"masked patches": run.mask_generator.num_masked, "loss": config.loss_type},
        )
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
    end_distributed()
