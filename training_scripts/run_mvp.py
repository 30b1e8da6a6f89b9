#!/usr/bin/env python
"""Pre-train MVP: a BEiT-style ViT whose block-masked patches predict a frozen CLIP vision teacher's patch features.

Examples:

    # tiny model on the embedded photographs, teacher from a local CLIP folder
    python training_scripts/run_mvp.py --preset tiny --teacher_name_or_path ./clip-vit-base-patch16 \
        --output_dir outputs/mvp-tiny --do_train --max_steps 50 --per_device_train_batch_size 8

    # ViT-B/16 on your images, 8 GPUs (see the README for multi-node)
    accelerate launch --num_processes 8 training_scripts/run_mvp.py training_scripts/configs/mvp_base_in1k.json

Any flag of `transformers.TrainingArguments` works; a single `.json` recipe may replace the command line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

import hf_unified_pretrain  # noqa: F401  (registers the model types with the Auto classes)
from hf_unified_pretrain.cards import render_model_card, save_model_card
from hf_unified_pretrain.data import MaskedImageCollator
from hf_unified_pretrain.masking import BlockMaskGenerator
from hf_unified_pretrain.models.mvp import MVPConfig, MVPImageProcessor
from hf_unified_pretrain.training import (
    DataArguments,
    ModelArguments,
    PretrainingArguments,
    attach_frozen_teacher,
    build_config,
    build_pretraining_model,
    build_trainer,
    parse_args_or_json,
    plot_reconstruction,
    prepare_datasets,
    resolve_resume_checkpoint,
    setup_logging,
    train_and_save,
    write_visualisation,
)


@dataclass
class MVPArguments:
    """MVP-specific choices of this script (everything that changes the model itself lives in `MVPConfig`)."""

    preset: str | None = field(
        default=None, metadata={"help": "Start from an MVPConfig preset: tiny, base or large (ignored with a checkpoint)."}
    )
    model_card: bool = field(default=True, metadata={"help": "Write README.md (model card) into output_dir."})


def build_model_and_processor(model_args: ModelArguments, mvp_args: MVPArguments, image_size: int | None):
    """MVP config (checkpoint, preset or model_type) → pre-training model and its image processor."""
    if mvp_args.preset and not (model_args.model_name_or_path or model_args.config_name):
        config = MVPConfig.from_preset(mvp_args.preset)
        if model_args.config_overrides:
            config.update_from_string(model_args.config_overrides)
        if model_args.teacher_name_or_path:
            config.teacher_name_or_path = model_args.teacher_name_or_path
    else:
        model_args.model_type = model_args.model_type or "mvp"
        config = build_config(model_args)
    if image_size is not None:
        config.image_size = image_size
    model = build_pretraining_model(model_args, config)
    source = model_args.image_processor_name or model_args.model_name_or_path
    processor = MVPImageProcessor.from_pretrained(source) if source else MVPImageProcessor()
    side = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    processor.size = {"height": side, "width": side}
    return model, processor


def draw_prediction_map(model, batch: dict[str, torch.Tensor], output_dir: Path) -> Path:
    """Mask overlay and per-patch cosine similarity between MVP's predictions and the teacher's features."""
    outputs = model(**{k: v for k, v in batch.items() if k in ("pixel_values", "bool_masked_pos", "teacher_pixel_values")})
    return plot_reconstruction(
        batch["pixel_values"].cpu(),
        outputs.bool_masked_pos.cpu(),
        output_dir / "reconstruction.png",
        patch_size=model.config.patch_size,
        predictions=outputs.logits.float().cpu(),
        targets=outputs.teacher_features.float().cpu(),
        title="MVP: cosine(prediction, CLIP teacher feature) per patch",
    )


def main(args: list[str] | None = None) -> dict[str, float]:
    model_args, data_args, training_args, mvp_args = parse_args_or_json(
        (ModelArguments, DataArguments, PretrainingArguments, MVPArguments), args
    )
    logger = setup_logging(training_args, "run_mvp")
    resume_from = resolve_resume_checkpoint(training_args)

    model, image_processor = build_model_and_processor(model_args, mvp_args, data_args.image_size)
    config = model.config
    image_size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    attach_frozen_teacher(model, model_args, image_processor.image_mean, image_processor.image_std)

    datasets, skipped = prepare_datasets(data_args, model_args, training_args, image_processor, image_size)
    grid = config.grid_size
    mask_generator = BlockMaskGenerator(
        grid,
        config.num_masked_for(grid[0] * grid[1]),
        min_block_tokens=config.min_block_tokens,
        min_aspect=config.min_aspect,
        max_aspect=config.max_aspect,
    )
    collator = MaskedImageCollator(mask_generator, seed=training_args.seed)
    trainer = build_trainer(model, training_args, datasets, collator, image_processor, skipped)
    metrics = train_and_save(trainer, resume_from)

    if trainer.is_world_process_zero():
        figure = write_visualisation(trainer, draw_prediction_map)
        logger.info("Prediction map written to %s", figure)
        if mvp_args.model_card and training_args.do_train:
            card = render_model_card(
                training_args.output_dir,
                method="mvp",
                size=mvp_args.preset or "custom",
                training_recipe={
                    "steps": trainer.state.global_step,
                    "batch size (total)": training_args.total_train_batch_size,
                    "learning rate": training_args.learning_rate,
                    "masked patches": config.num_masked_for(grid[0] * grid[1]),
                    "loss": config.loss_type,
                    "data": data_args.dataset_name or data_args.train_dir or "embedded photographs (scikit-image)",
                },
                results={k: v for k, v in metrics.items() if k in ("train_loss", "eval_loss")},
                loss_curve=Path(training_args.output_dir) / "loss_curve.png",
            )
            save_model_card(card, training_args.output_dir)
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
