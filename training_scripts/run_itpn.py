#!/usr/bin/env python
r"""Pre-train iTPN: a HiViT backbone and its feature pyramid trained together, on pixels or a CLIP teacher's features.

Examples:

    # pixel target (MAE-style, 75 % of patches dropped from the encoder), tiny model on the embedded photographs
    python training_scripts/run_itpn.py training_scripts/configs/itpn_quickstart.json

    # CLIP target (BEiT-style block masking; both heads regress the teacher's projected patch tokens)
    python training_scripts/run_itpn.py --preset itpn-base-clip --teacher_name_or_path ./clip-vit-base-patch16 \
        --train_dir /data/imagenet/train --output_dir outputs/itpn-base-clip --do_train --bf16

    # masked feature modelling on every pyramid level against an EMA teacher, added to the pixel target
    python training_scripts/run_itpn.py --preset itpn-base-pixel --config_overrides mfm_target=ema ...

Any flag of `transformers.TrainingArguments` works; a single `.json` recipe may replace the command line, and
`accelerate launch` runs it on several GPUs or nodes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import SimpleNamespace

from transformers import set_seed

import hf_unified_pretrain  # noqa: F401  (registers the model types with the Auto classes)
from hf_unified_pretrain.data import MaskedImageCollator
from hf_unified_pretrain.models.itpn import ITPN_PRESETS, ITPNConfig, ITPNImageProcessor, ITPNModel
from hf_unified_pretrain.teachers import EMATeacher
from hf_unified_pretrain.teachers.ema_callback import EMACallback
from hf_unified_pretrain.training import (
    DataArguments,
    ModelArguments,
    PretrainingArguments,
    attach_frozen_teacher,
    build_model_and_processor,
    build_trainer,
    draw_feature_prediction,
    draw_pixel_reconstruction,
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
class ITPNArguments:
    """iTPN-specific choices of this script (everything that changes the model itself lives in `ITPNConfig`)."""

    preset: str | None = field(
        default=None,
        metadata={"help": "Start from an ITPNConfig preset (listed at the top of --help), e.g. itpn-base-pixel."},
    )
    mfm_teacher_name_or_path: str | None = field(
        default=None, metadata={"help": "Local folder of a pre-trained iTPN for config.mfm_target='frozen'."}
    )
    ema_momentum: float = field(
        default=0.996, metadata={"help": "Start momentum of the EMA teacher (mfm_target=ema)."}
    )
    model_card: bool = field(default=True, metadata={"help": "Write README.md (model card) into output_dir."})


def attach_mfm_teacher(model, itpn_args: ITPNArguments) -> list:
    """Masked feature modelling needs a teacher pyramid: an EMA copy of the student (updated by a callback after
    every optimiser step, saved in checkpoints) or a frozen pre-trained iTPN. Returns the callbacks to add."""
    if model.config.mfm_target == "ema":
        ema = EMATeacher(model.itpn, base_momentum=itpn_args.ema_momentum)
        model.set_mfm_teacher(ema)
        return [EMACallback(ema, student="itpn")]
    if model.config.mfm_target == "frozen":
        if not itpn_args.mfm_teacher_name_or_path:
            raise ValueError("config.mfm_target='frozen' needs --mfm_teacher_name_or_path <local iTPN folder>.")
        model.set_mfm_teacher(ITPNModel.from_pretrained(itpn_args.mfm_teacher_name_or_path))
    return []


def setup(args: list[str] | None = None) -> SimpleNamespace:
    """Everything before training: arguments, logging, seeding, model (+ teachers), data and the Trainer.

    The seed is set before the model is built, so `--seed` fixes the initial weights as well as the data order,
    the masks and dropout.
    """
    model_args, data_args, training_args, itpn_args = parse_args_or_json(
        (ModelArguments, DataArguments, PretrainingArguments, ITPNArguments),
        args,
        description=script_description(__doc__, ITPN_PRESETS),
    )
    logger = setup_logging(training_args, "run_itpn")
    resume_from = resolve_resume_checkpoint(training_args)
    set_seed(training_args.seed)

    model, image_processor = build_model_and_processor(
        model_args,
        config_class=ITPNConfig,
        processor_class=ITPNImageProcessor,
        preset=itpn_args.preset,
        image_size=data_args.image_size,
    )
    config = model.config
    if config.pretraining_target == "clip":
        attach_frozen_teacher(model, model_args, image_processor.image_mean, image_processor.image_std)
    callbacks = attach_mfm_teacher(model, itpn_args)

    datasets, skipped = prepare_datasets(data_args, model_args, training_args, image_processor, config.image_size)
    collator = MaskedImageCollator(model.mask_generator(), seed=training_args.seed)
    trainer = build_trainer(model, training_args, datasets, collator, image_processor, skipped, callbacks)
    return SimpleNamespace(
        trainer=trainer, resume_from=resume_from, logger=logger, data_args=data_args, itpn_args=itpn_args
    )


def main(args: list[str] | None = None) -> dict[str, float]:
    run = setup(args)
    trainer, config = run.trainer, run.trainer.model.config
    metrics = train_and_save(trainer, run.resume_from)

    is_clip = config.pretraining_target == "clip"
    figure = write_visualisation(trainer, draw_feature_prediction if is_clip else draw_pixel_reconstruction)
    if figure is not None:
        run.logger.info("Reconstruction written to %s", figure)
    if run.itpn_args.model_card:
        write_model_card(
            trainer,
            run.data_args,
            metrics,
            method="itpn",
            size=run.itpn_args.preset or "custom",
            recipe={
                "target": config.pretraining_target,
                "mask ratio": config.mask_ratio,
                "masked feature modelling": config.mfm_target or "off",
            },
        )
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
    end_distributed()
