#!/usr/bin/env python
r"""Pre-train M3I: one mixed input, four mutual-information targets (dense views, categories, captions).

Each image gives two augmented views (random resized crops with independent flips) and the geometry of view 2
relative to view 1. The collator pairs every image with another one of the batch (`data.mixing.partner_indices`)
and mixes their first views block-wise on the backbone's feature grid (`--num_mixed_cells`); the per-cell source
index travels with the batch, so the dense targets, the area-weighted labels and the image-text positives all know
which image each region came from. Labels (`--label_column`: an integer column, or a COCO-style `semantic_map`
column whose categories become a normalised multi-hot) and captions (`--caption_column`: a string or a list of
strings, one picked at random per step, tokenised in the collator for the frozen `--text_encoder`) switch their
terms on; without them those terms are off. The EMA target encoder is checkpointed with the Trainer (resumable).

Examples:

    # tiny InternImage on tiny COCO with captions (tiny random BERT as the text encoder)
    python training_scripts/run_m3i.py --preset tiny --coco_root ../shared/data --caption_column captions \
        --label_column semantic_map --text_encoder /path/to/bert --output_dir outputs/m3i-tiny --do_train \
        --max_steps 50 --per_device_train_batch_size 8

    python training_scripts/run_m3i.py training_scripts/configs/m3i_tiny_coco.json

Any flag of `transformers.TrainingArguments` works; a single `.json` recipe may replace the command line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, set_seed

import hf_unified_pretrain  # noqa: F401  (registers the model types with the Auto classes)
from hf_unified_pretrain.data import (
    COCO_BACKGROUND,
    COCO_IGNORE_INDEX,
    SeededRandomness,
    SkippedImagesCallback,
    attach_transforms,
    load_pretraining_dataset,
    load_tiny_coco,
    mix_images,
    partner_indices,
    pil_to_normalized_tensor,
    sample_resized_crop_box,
)
from hf_unified_pretrain.data.two_view import random_photometric
from hf_unified_pretrain.masking import block_mix_sources, mix_soft_labels, source_fractions
from hf_unified_pretrain.models.m3i import M3I_PRESETS, M3IConfig, M3IForPreTraining
from hf_unified_pretrain.models.registry import image_processor_for
from hf_unified_pretrain.teachers import EMACallback, FrozenTextTeacher
from hf_unified_pretrain.training import (
    DataArguments,
    LossCurveCallback,
    ModelArguments,
    PretrainingArguments,
    PretrainingTrainer,
    end_distributed,
    parse_args_or_json,
    resolve_resume_checkpoint,
    script_description,
    setup_logging,
    train_and_save,
)
from hf_unified_pretrain.training.script_utils import preset_config


@dataclass
class M3IArguments:
    """M3I-specific choices of this script (everything that changes the model itself lives in `M3IConfig`)."""

    preset: str | None = field(default=None, metadata={"help": "M3IConfig preset: tiny, tiny-vit, internimage-h."})
    coco_root: str | None = field(default=None, metadata={"help": "Folder holding tiny_coco.tar.gz: train on it."})
    label_column: str | None = field(
        default=None, metadata={"help": "Integer label column, or a COCO `semantic_map` column (multi-label)."}
    )
    num_labels: int | None = field(default=None, metadata={"help": "Classes (default: 81 for COCO maps)."})
    caption_column: str | None = field(default=None, metadata={"help": "Caption column (str or list of str)."})
    text_encoder: str | None = field(
        default=None, metadata={"help": "Local folder of a transformers text model + tokenizer (frozen)."}
    )
    max_caption_length: int = field(default=32, metadata={"help": "Tokenizer truncation length."})
    num_mixed_cells: int | None = field(
        default=None,
        metadata={"help": "Feature cells of each input taken from its partner (default: a quarter; 0 = no mixing)."},
    )
    color_jitter_probability: float = field(
        default=0.0,
        metadata={"help": "Probability of a colour jitter (brightness/contrast/saturation 0.4, hue 0.1) per view."},
    )
    grayscale_probability: float = field(default=0.0, metadata={"help": "Probability of a gray view (per view)."})

    def __post_init__(self) -> None:
        for name in ("color_jitter_probability", "grayscale_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"--{name} must be in [0, 1], got {getattr(self, name)}.")


JITTER_STRENGTHS = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue (the SimCLR/MoCo family's)


def _view(
    image: Image.Image,
    size: int,
    scale: tuple[float, float],
    rng: SeededRandomness,
    mean,
    std,
    jitter_probability: float = 0.0,
    grayscale_probability: float = 0.0,
):
    top, left, height, width = sample_resized_crop_box(image.height, image.width, scale, (3 / 4, 4 / 3), rng)
    flip = rng.bernoulli(0.5)
    crop = image.crop((left, top, left + width, top + height)).resize((size, size), Image.BICUBIC)
    if flip:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
    crop = random_photometric(crop, rng, jitter_probability, JITTER_STRENGTHS, grayscale_probability)
    return pil_to_normalized_tensor(crop, mean, std), (top, left, height, width, flip)


def relative_geometry(box_1: tuple, box_2: tuple) -> torch.Tensor:
    """View 2 relative to view 1 as SiameseIM's `rel_pos_21` (offsets and sizes in view-1 units, relative flip)."""
    top_1, left_1, height_1, width_1, flip_1 = box_1
    top_2, left_2, height_2, width_2, flip_2 = box_2
    delta_i = (top_2 - top_1) / height_1
    delta_h, delta_w = height_2 / height_1, width_2 / width_1
    # horizontal positions in view 1's own (possibly mirrored) frame
    right_1, right_2 = left_1 + width_1, left_2 + width_2
    if flip_1:
        delta_j, flip_delta_j = (right_1 - right_2) / width_1, (right_1 - left_2) / width_1
    else:
        delta_j, flip_delta_j = (left_2 - left_1) / width_1, (right_2 - left_1) / width_1
    relative_flip = float(flip_1 != flip_2)
    return torch.tensor([delta_i, delta_j, delta_h, delta_w, relative_flip, flip_delta_j], dtype=torch.float32)


class M3ITransform:
    """RGB image → `pixel_values` (view 1), `pixel_values_2` (view 2), `relative_geometry` (6,).

    Each view is a random resized crop with its own flip and, optionally, its own colour jitter / grayscale (without
    them two views of one image can be matched by their colours alone).
    """

    def __init__(
        self,
        image_size: int,
        mean,
        std,
        crop_min_scale: float = 0.2,
        seed: int | None = None,
        color_jitter_probability: float = 0.0,
        grayscale_probability: float = 0.0,
    ) -> None:
        self.image_size, self.mean, self.std = image_size, mean, std
        self.scale = (crop_min_scale, 1.0)
        self.photometric = (color_jitter_probability, grayscale_probability)
        self.rng = SeededRandomness(seed)

    def __call__(self, image: Image.Image) -> dict[str, torch.Tensor]:
        view_1, box_1 = _view(image, self.image_size, self.scale, self.rng, self.mean, self.std, *self.photometric)
        view_2, box_2 = _view(image, self.image_size, self.scale, self.rng, self.mean, self.std, *self.photometric)
        return {"pixel_values": view_1, "pixel_values_2": view_2, "relative_geometry": relative_geometry(box_1, box_2)}


def label_distribution(value: Any, num_labels: int) -> torch.Tensor:
    """An integer label → one-hot; a COCO semantic map → its categories as a normalised multi-hot (background if
    none)."""
    distribution = torch.zeros(num_labels)
    if isinstance(value, Image.Image):
        present = torch.from_numpy(np.asarray(value, dtype=np.int64)).unique()
        present = present[(present != COCO_BACKGROUND) & (present != COCO_IGNORE_INDEX) & (present < num_labels)]
        distribution[present if present.numel() else torch.tensor([COCO_BACKGROUND])] = 1.0
    else:
        distribution[int(value)] = 1.0
    return distribution / distribution.sum()


class M3ICollator:
    """Stacks views, pairs every image with a partner, mixes the first views block-wise, mixes the labels by area and
    tokenises one randomly chosen caption per image."""

    def __init__(
        self,
        grid_size: tuple[int, int],
        stride: int,
        num_mixed: int,
        label_column: str | None = None,
        num_labels: int | None = None,
        caption_column: str | None = None,
        tokenizer=None,
        max_caption_length: int = 32,
        seed: int | None = None,
    ) -> None:
        self.grid_size, self.stride, self.num_mixed = grid_size, stride, num_mixed
        self.label_column, self.num_labels = label_column, num_labels
        self.caption_column, self.tokenizer, self.max_caption_length = caption_column, tokenizer, max_caption_length
        self.rng = SeededRandomness(seed)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        examples = [example for example in examples if example.get("pixel_values") is not None]
        batch = {key: torch.stack([e[key] for e in examples]) for key in ("pixel_values", "pixel_values_2")}
        batch["relative_geometry"] = torch.stack([e["relative_geometry"] for e in examples])
        size = len(examples)
        batch["target_pixel_values"] = batch["pixel_values"]
        source_index = partner = None
        if self.num_mixed > 0 and size > 1:
            partner = partner_indices(size)
            source_index = block_mix_sources(size, self.grid_size, self.num_mixed, generator=self.rng.generator())
            views = batch["pixel_values"]
            batch["pixel_values"] = mix_images([views, views[partner]], source_index, self.stride)
            batch["source_index"], batch["mix_partner"] = source_index, partner
        if self.label_column:
            labels = torch.stack([label_distribution(e[self.label_column], self.num_labels) for e in examples])
            if source_index is not None:
                labels = mix_soft_labels(torch.stack([labels, labels[partner]], 1), source_fractions(source_index, 2))
            batch["labels"] = labels
        if self.caption_column:
            captions = []
            for example in examples:
                value = example[self.caption_column]
                options = [value] if isinstance(value, str) else list(value)
                captions.append(options[self.rng.randint(0, len(options) - 1)])
            tokens = self.tokenizer(
                captions, padding=True, truncation=True, max_length=self.max_caption_length, return_tensors="pt"
            )
            batch["input_ids"], batch["attention_mask"] = tokens["input_ids"], tokens["attention_mask"]
        return batch


def setup(args: list[str] | None = None) -> SimpleNamespace:
    model_args, data_args, training_args, m3i_args = parse_args_or_json(
        (ModelArguments, DataArguments, PretrainingArguments, M3IArguments),
        args,
        description=script_description(__doc__, M3I_PRESETS),
    )
    logger = setup_logging(training_args, "run_m3i")
    resume_from = resolve_resume_checkpoint(training_args)
    set_seed(training_args.seed)  # before the model is built: --seed fixes the initial weights too

    with training_args.main_process_first(desc="loading the dataset"):
        if m3i_args.coco_root:
            raw = load_tiny_coco(m3i_args.coco_root, model_args.cache_dir, splits=("train",))
            if data_args.max_train_samples is not None:
                raw["train"] = raw["train"].select(range(min(data_args.max_train_samples, len(raw["train"]))))
        else:
            raw = load_pretraining_dataset(**data_args.loading_kwargs(training_args.seed, model_args.cache_dir))
    columns = set(raw["train"].column_names)
    for flag, column in (("--label_column", m3i_args.label_column), ("--caption_column", m3i_args.caption_column)):
        if column and column not in columns:
            raise ValueError(f"{flag} {column!r} is not a column of the training data ({sorted(columns)}).")
    if m3i_args.caption_column and not m3i_args.text_encoder:
        raise ValueError("--caption_column needs --text_encoder (a local folder with a text model and its tokenizer).")

    text_teacher = tokenizer = None
    if m3i_args.caption_column:
        text_teacher = FrozenTextTeacher.from_pretrained(m3i_args.text_encoder)
        tokenizer = AutoTokenizer.from_pretrained(m3i_args.text_encoder, local_files_only=True)
    num_labels = m3i_args.num_labels or (81 if m3i_args.label_column == "semantic_map" else None)
    if m3i_args.label_column and num_labels is None:
        raise ValueError("--label_column needs --num_labels (the number of classes).")

    if model_args.model_name_or_path:
        model = M3IForPreTraining.from_pretrained(model_args.model_name_or_path)
    else:
        overrides: dict[str, Any] = {}
        if data_args.image_size:
            overrides["image_size"] = data_args.image_size
        if not m3i_args.label_column:
            overrides["classification_loss_weight"] = 0.0
        else:
            overrides["num_labels"] = num_labels
        if text_teacher is None:
            overrides["image_text_loss_weight"] = 0.0
        else:
            overrides["text_hidden_size"] = text_teacher.feature_dim
        # the recipe's overrides win over the data-driven fields, so a recipe can e.g. reweight or switch off a
        # term (ablations), and feature_stage / image_size re-derive the feature stride and the grid
        config = preset_config(M3IConfig, m3i_args.preset or "tiny", model_args.config_overrides, **overrides)
        model = M3IForPreTraining(config)
    config = model.config
    ema = model.build_ema_teacher()
    if text_teacher is not None:
        model.set_teacher(text_teacher, name="text")

    image_processor = image_processor_for(config)
    transform = M3ITransform(
        config.image_size,
        image_processor.image_mean,
        image_processor.image_std,
        data_args.crop_min_scale,
        color_jitter_probability=m3i_args.color_jitter_probability,
        grayscale_probability=m3i_args.grayscale_probability,
    )
    keep = [column for column in (m3i_args.label_column, m3i_args.caption_column) if column]
    datasets, skipped = attach_transforms(raw, transform, transform, keep_columns=keep)
    cells = config.grid_size[0] * config.grid_size[1]
    num_mixed = cells // 4 if m3i_args.num_mixed_cells is None else m3i_args.num_mixed_cells
    collator = M3ICollator(
        config.grid_size,
        config.feature_stride,
        num_mixed,
        label_column=m3i_args.label_column,
        num_labels=config.num_labels,
        caption_column=m3i_args.caption_column,
        tokenizer=tokenizer,
        max_caption_length=m3i_args.max_caption_length,
        seed=training_args.seed,
    )
    logger.info("M3I terms: %s; %d of %d cells mixed from a partner image", config.loss_weights, num_mixed, cells)
    trainer = PretrainingTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets["train"] if training_args.do_train else None,
        data_collator=collator,
        processing_class=image_processor,
        callbacks=[LossCurveCallback(), SkippedImagesCallback(skipped), EMACallback(ema, student="m3i")],
    )
    return SimpleNamespace(trainer=trainer, resume_from=resume_from, model=model, ema=ema)


def main(args: list[str] | None = None) -> dict[str, Any]:
    run = setup(args)
    return train_and_save(run.trainer, run.resume_from)


if __name__ == "__main__":
    main(sys.argv[1:])
    end_distributed()
