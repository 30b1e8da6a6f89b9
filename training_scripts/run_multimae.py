#!/usr/bin/env python
r"""Pre-train MultiMAE: Dirichlet multi-modal masking over RGB, depth and semantic maps, one decoder per task.

Data: a dataset with one column per modality (`--dataset_name` = a `save_to_disk` folder or a `datasets` name,
`--modality_columns '{"rgb": "image", "semseg": "semantic_map"}'` maps modality names to columns), or a folder with
one sub-folder per modality and matching file stems (`--train_dir`). RGB-only data: add pseudo labels first with
`hf-unified-pretrain pseudo-label` (any local depth and segmentation model), or pre-train on RGB alone: a
`--train_dir` without modality sub-folders (e.g. CIFAR-10's class folders) is read as RGB, and a new model keeps only
the modalities the data holds (or those of `--modalities`).

Examples:

    # tiny model on tiny COCO with pseudo depth (see tests/scripts/test_run_multimae.py for preparing it)
    python training_scripts/run_multimae.py --preset tiny --dataset_name coco_with_depth \
        --modality_columns '{"rgb": "image", "semseg": "semantic_map"}' --num_semseg_classes 81 \
        --output_dir outputs/multimae-tiny --do_train --max_steps 50 --per_device_train_batch_size 8

    # RGB only on an image folder with class sub-folders (benchmarks/learning.py's CIFAR-10 recipe:
    # training_scripts/configs/multimae_learning.json)
    python training_scripts/run_multimae.py --preset tiny --modalities rgb --output_modalities none \
        --train_dir cifar10/train --config_overrides image_size=32,patch_size=8,num_visible_tokens=4 \
        --output_dir outputs/multimae-cifar10 --do_train --max_steps 2800 --per_device_train_batch_size 128

    # ViT-B/16 on 8 GPUs
    accelerate launch --num_processes 8 training_scripts/run_multimae.py training_scripts/configs/multimae_base.json

Any flag of `transformers.TrainingArguments` works; a single `.json` recipe may replace the command line.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from transformers import set_seed

import hf_unified_pretrain  # noqa: F401  (registers the model types with the Auto classes)
from hf_unified_pretrain.data import SkippedImageCounter
from hf_unified_pretrain.data.multimodal import (
    MultiModalCollator,
    MultiModalTransform,
    attach_multimodal_transform,
    fields_from_config,
    load_multimodal_folder,
    load_single_modality_folder,
)
from hf_unified_pretrain.models.multimae import (
    MULTIMAE_PRESETS,
    MultiMAEConfig,
    MultiMAEForPreTraining,
    MultiMAEImageProcessor,
)
from hf_unified_pretrain.training import (
    DataArguments,
    ModelArguments,
    PretrainingArguments,
    build_model_and_processor,
    build_trainer,
    end_distributed,
    parse_args_or_json,
    resolve_resume_checkpoint,
    script_description,
    setup_logging,
    train_and_save,
    write_model_card,
)
from hf_unified_pretrain.training.multimodal_plots import draw_multimodal_predictions


@dataclass
class MultiMAEArguments:
    """MultiMAE-specific choices of this script (everything that changes the model lives in `MultiMAEConfig`)."""

    preset: str | None = field(
        default=None, metadata={"help": "Start from a MultiMAEConfig preset: tiny, base or large."}
    )
    modality_columns: str | None = field(
        default=None, metadata={"help": 'JSON {modality: dataset column}, e.g. {"rgb": "image"}; default: same names.'}
    )
    num_semseg_classes: int | None = field(
        default=None, metadata={"help": "Classes of the semantic maps (sets the semseg modality of a new model)."}
    )
    modalities: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated modalities a new model keeps, e.g. 'rgb' for RGB-only pre-training (default: "
            "the config's modalities that the data holds)."
        },
    )
    output_modalities: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated modalities the decoders of a new model predict (the extra norm_rgb decoder "
            "follows config.extra_norm_rgb_output); 'none' keeps the norm_rgb decoder alone, i.e. MAE's "
            "normalised-pixel loss only (default: the config's output_modalities)."
        },
    )
    model_card: bool = field(default=True, metadata={"help": "Write README.md (model card) into output_dir."})


def _load_folder(folder: str, folder_names: set[str], image_modality: str | None, logger) -> Dataset:
    """A folder with one sub-folder per modality, or else (no sub-folder is named after a modality) a plain image
    folder such as CIFAR's class folders, read as the image modality alone."""
    sub_folders = {path.name for path in Path(folder).iterdir() if path.is_dir()} if Path(folder).is_dir() else set()
    if sub_folders & folder_names or image_modality is None:
        return load_multimodal_folder(folder)
    logger.info(
        "%s has no sub-folder named after a modality (%s): reading it as a plain image folder (%r only).",
        folder,
        sorted(folder_names),
        image_modality,
    )
    return load_single_modality_folder(folder, image_modality)


def _load_data(
    data_args: DataArguments, seed: int, folder_names: set[str], image_modality: str | None, logger
) -> DatasetDict:
    if data_args.train_dir:
        train = _load_folder(data_args.train_dir, folder_names, image_modality, logger)
        validation = (
            _load_folder(data_args.validation_dir, folder_names, image_modality, logger)
            if data_args.validation_dir
            else None
        )
    elif data_args.dataset_name:
        path = Path(data_args.dataset_name)
        loaded = load_from_disk(str(path)) if path.is_dir() else load_dataset(data_args.dataset_name)
        if isinstance(loaded, Dataset):
            loaded = DatasetDict({"train": loaded})
        train, validation = loaded["train"], loaded.get("validation")
    else:
        raise ValueError("MultiMAE needs multi-modal data: pass --dataset_name (columns per modality) or --train_dir.")
    if validation is None and data_args.train_val_split:
        split = train.train_test_split(test_size=data_args.train_val_split, seed=seed)
        train, validation = split["train"], split["test"]
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    if validation is not None and data_args.max_eval_samples is not None:
        validation = validation.select(range(min(data_args.max_eval_samples, len(validation))))
    return DatasetDict({"train": train, **({"validation": validation} if validation is not None else {})})


def setup(args: list[str] | None = None) -> SimpleNamespace:
    """Arguments, logging, seeding, model, multi-modal data with one crop box per sample, collator and Trainer."""
    model_args, data_args, training_args, mm_args = parse_args_or_json(
        (ModelArguments, DataArguments, PretrainingArguments, MultiMAEArguments),
        args,
        description=script_description(__doc__, MULTIMAE_PRESETS),
    )
    if mm_args.modalities is not None and model_args.model_name_or_path:
        raise ValueError(
            "--modalities chooses the modalities of a new model; a loaded checkpoint keeps its own. Drop "
            "--modalities, or --model_name_or_path to train from scratch."
        )
    if mm_args.output_modalities is not None and model_args.model_name_or_path:
        raise ValueError(
            "--output_modalities chooses the decoders of a new model; a loaded checkpoint keeps its own. Drop "
            "--output_modalities, or --model_name_or_path to train from scratch."
        )
    logger = setup_logging(training_args, "run_multimae")
    resume_from = resolve_resume_checkpoint(training_args)
    set_seed(training_args.seed)
    if training_args.label_names == ["pixel_values"]:
        training_args.label_names = ["modalities"]  # the batch's inputs; gives an eval_loss
    if training_args.ddp_find_unused_parameters is None:
        # A Dirichlet draw can leave a modality without any visible token in a whole batch (its input adapter then
        # gets no gradient), as the original's default --find_unused_params accounts for.
        training_args.ddp_find_unused_parameters = True

    model, image_processor = build_model_and_processor(
        model_args,
        config_class=MultiMAEConfig,
        processor_class=MultiMAEImageProcessor,
        preset=mm_args.preset,
        image_size=data_args.image_size,
    )
    config = model.config
    if mm_args.num_semseg_classes is not None and not model_args.model_name_or_path:
        for spec in config.modalities:
            if spec["kind"] == "segmentation":
                spec["num_classes"] = mm_args.num_semseg_classes
        config = MultiMAEConfig.from_dict(config.to_dict())
        model = MultiMAEForPreTraining(config)

    new_model = not model_args.model_name_or_path
    if mm_args.modalities is not None:
        config = config.select_modalities([name.strip() for name in mm_args.modalities.split(",") if name.strip()])
        model = MultiMAEForPreTraining(config)
    if mm_args.output_modalities is not None:
        outputs = [name.strip() for name in mm_args.output_modalities.split(",") if name.strip()]
        outputs = [] if [name.lower() for name in outputs] == ["none"] else outputs
        if not outputs and not config.extra_norm_rgb_output:
            raise ValueError(
                "--output_modalities none leaves the model without any decoder (config.extra_norm_rgb_output is "
                "False): name at least one modality, or set extra_norm_rgb_output=true in --config_overrides."
            )
        config = MultiMAEConfig.from_dict({**config.to_dict(), "output_modalities": outputs})
        model = MultiMAEForPreTraining(config)

    columns = json.loads(mm_args.modality_columns) if mm_args.modality_columns else {}
    folder_names = {spec["name"] for spec in config.modalities} | set(columns.values())
    with training_args.main_process_first(desc="loading the dataset"):
        datasets = _load_data(data_args, training_args.seed, folder_names, config.rgb_modality, logger)
    available = set(datasets["train"].column_names)
    present = [spec["name"] for spec in config.modalities if columns.get(spec["name"], spec["name"]) in available]
    missing = [spec["name"] for spec in config.modalities if spec["name"] not in present]
    if missing and present and new_model and any(name in config.input_modalities for name in present):
        # No data, no training signal: a new model does not carry (and compute) adapters and decoders for them.
        logger.warning("Modalities %s are not in the data; the new model is built without them.", missing)
        config = config.select_modalities(present)
        model = MultiMAEForPreTraining(config)
    elif missing:
        logger.warning("Modalities %s are not in the data; the model is trained without them.", missing)
    fields = [f for f in fields_from_config(config, columns) if (f.column or f.name) in available]
    if not fields:
        raise ValueError(
            f"None of the modalities {[s['name'] for s in config.modalities]} is a column of the data "
            f"({sorted(available)}); map them with --modality_columns."
        )
    image_size = config.image_size if isinstance(config.image_size, int) else tuple(config.image_size)
    common = dict(
        image_size=image_size,
        mean=image_processor.image_mean,
        std=image_processor.image_std,
        standardize_depth_maps=config.standardize_depth,
        depth_trim_fraction=config.depth_trim_fraction,
    )
    train_transform = MultiModalTransform(
        fields,
        train=True,
        scale=(data_args.crop_min_scale, 1.0),
        hflip=0.5 if data_args.horizontal_flip else 0.0,
        seed=training_args.seed,
        **common,
    )
    eval_transform = MultiModalTransform(fields, train=False, **common)
    attach_multimodal_transform(datasets["train"], train_transform)
    if "validation" in datasets:
        attach_multimodal_transform(datasets["validation"], eval_transform)
    collator = MultiModalCollator(
        model.mask_generator,
        patch_size=config.patch_size,
        input_modalities=config.input_modalities,
        stride_levels={spec["name"]: spec["stride_level"] for spec in config.modalities},
        seed=training_args.seed,
    )
    trainer = build_trainer(model, training_args, datasets, collator, image_processor, SkippedImageCounter())
    return SimpleNamespace(
        trainer=trainer, resume_from=resume_from, logger=logger, data_args=data_args, mm_args=mm_args, fields=fields
    )


def _to_device(value, device):
    if isinstance(value, dict):
        return {key: _to_device(item, device) for key, item in value.items()}
    return value.to(device) if isinstance(value, torch.Tensor) else value


def main(args: list[str] | None = None) -> dict[str, float]:
    run = setup(args)
    trainer = run.trainer
    metrics = train_and_save(trainer, run.resume_from)

    if trainer.is_world_process_zero():
        model = trainer.accelerator.unwrap_model(trainer.model).eval()
        loader = trainer.get_eval_dataloader() if trainer.eval_dataset is not None else trainer.get_train_dataloader()
        batch = _to_device(next(iter(loader)), model.device)
        processor = trainer.processing_class
        figure = draw_multimodal_predictions(
            model,
            batch,
            Path(trainer.args.output_dir) / "cross_modal_predictions.png",
            image_mean=processor.image_mean,
            image_std=processor.image_std,
        )
        run.logger.info("Cross-modal prediction picture written to %s", figure)
    if run.mm_args.model_card:
        config = trainer.model.config
        write_model_card(
            trainer,
            run.data_args,
            metrics,
            method="multimae",
            size=run.mm_args.preset or "custom",
            recipe={
                "modalities": ", ".join(f.name for f in run.fields),
                "visible tokens": config.num_visible_tokens,
                "Dirichlet alpha": config.dirichlet_alpha,
            },
        )
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
    end_distributed()
