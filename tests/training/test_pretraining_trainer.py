"""PretrainingTrainer: loss parts logged (train with gradient accumulation, eval), layer-wise LR decay, loss curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import AutoModelForPreTraining

from hf_unified_pretrain.models.itpn import ITPNConfig
from hf_unified_pretrain.models.mvp import MVPConfig
from hf_unified_pretrain.training import (
    LOSS_CURVE_NAME,
    LossCurveCallback,
    PretrainingArguments,
    PretrainingTrainer,
    build_parameter_groups,
    plot_loss_curves,
)

from .toy_models import ToyPretrainingConfig, ToyPretrainingModel, toy_dataset


def _args(tmp_path, **overrides) -> PretrainingArguments:
    values = dict(
        output_dir=str(tmp_path),
        max_steps=4,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        learning_rate=1e-2,
        logging_steps=2,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    values.update(overrides)
    return PretrainingArguments(**values)


def _trainer(args, model=None, **kwargs) -> PretrainingTrainer:
    torch.manual_seed(0)
    model = model or ToyPretrainingModel(ToyPretrainingConfig())
    return PretrainingTrainer(
        model=model, args=args, train_dataset=toy_dataset(16), eval_dataset=toy_dataset(5, seed=1), **kwargs
    )


def test_loss_parts_are_logged_with_gradient_accumulation_and_eval(tmp_path):
    args = _args(tmp_path, gradient_accumulation_steps=2, eval_strategy="steps", eval_steps=2)
    trainer = _trainer(args)

    trainer.train()
    final_eval = trainer.evaluate()

    train_lines = [line for line in trainer.state.log_history if "loss" in line]
    eval_lines = [line for line in trainer.state.log_history if "eval_loss" in line]
    assert [line["step"] for line in train_lines] == [2, 4]
    assert len(eval_lines) == 3  # steps 2 and 4, then evaluate()
    aux_weight = trainer.model.config.aux_weight
    # Parts are averaged exactly like the total (over all micro-batches of the interval), so they recombine into it.
    for line in train_lines:
        assert {"loss_pixel", "loss_aux"} <= set(line)
        assert line["loss"] == pytest.approx(line["loss_pixel"] + aux_weight * line["loss_aux"], rel=1e-5)
    # Eval batches have 2, 2 and 1 images: parts are image-weighted like eval_loss, so they recombine too.
    for line in eval_lines:
        assert {"eval_loss_pixel", "eval_loss_aux"} <= set(line)
        assert line["eval_loss"] == pytest.approx(
            line["eval_loss_pixel"] + aux_weight * line["eval_loss_aux"], rel=1e-5
        )
    assert final_eval["eval_loss_pixel"] == eval_lines[-1]["eval_loss_pixel"]


def test_eval_parts_equal_a_manual_image_weighted_average(tmp_path):
    trainer = _trainer(_args(tmp_path))
    model = trainer.model.eval()

    metrics = trainer.evaluate()

    with torch.no_grad():
        parts = [model(example["pixel_values"][None]).losses for example in toy_dataset(5, seed=1)]
    for name in ("pixel", "aux"):
        expected = sum(p[name] for p in parts) / len(parts)
        assert metrics[f"eval_loss_{name}"] == pytest.approx(expected.item(), rel=1e-5)


def _lr_and_decay(optimizer, model) -> dict[str, tuple[float, float]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}


def test_layer_wise_lr_decay_hand_computed(tmp_path):
    args = _args(
        tmp_path, learning_rate=1.0, layer_decay=0.5, weight_decay=0.05, lr_scheduler_type="constant", max_steps=1
    )
    trainer = _trainer(args)

    trainer.train()  # the scheduler must keep each group's own learning rate

    got = _lr_and_decay(trainer.optimizer, trainer.model)
    # 4 ids (embeddings 0, blocks 1-2, head 3): scale = 0.5 ** (3 - id).
    expected = {
        "embed.weight": (0.125, 0.05),
        "embed.bias": (0.125, 0.0),
        "cls_token": (0.125, 0.0),  # listed by no_weight_decay()
        "layers.0.weight": (0.25, 0.05),
        "layers.0.bias": (0.25, 0.0),
        "layers.1.weight": (0.5, 0.05),
        "layers.1.bias": (0.5, 0.0),
        "norm.weight": (1.0, 0.0),
        "norm.bias": (1.0, 0.0),
        "head.weight": (1.0, 0.05),
        "head.bias": (1.0, 0.0),
    }
    assert got == expected  # powers of two: exact
    assert trainer.optimizer.param_groups[0]["lr"] == 1.0  # the logged learning_rate is the peak one


def test_without_layer_decay_only_weight_decay_exclusions(tmp_path):
    model = ToyPretrainingModel(ToyPretrainingConfig())
    model.layers[0].weight.requires_grad_(False)

    groups = build_parameter_groups(model, learning_rate=0.1, weight_decay=0.05)

    assert len(groups) == 2
    decayed = {n for g in groups if g["weight_decay"] == 0.05 for n in g["param_names"]}
    assert decayed == {"embed.weight", "layers.1.weight", "head.weight"}
    assert all(g["lr"] == 0.1 for g in groups)
    assert "layers.0.weight" not in {n for g in groups for n in g["param_names"]}


# What each model exempts from weight decay besides biases and 1-d tensors: iTPN as the original (absolute
# position embeddings, relative-position bias tables) plus mask tokens; MVP as BEiT ([CLS], [MASK], positions,
# relative-position bias tables). The pixel decoder's fixed sin-cos table is frozen, so it is in no group at all.
_ITPN_CLIP = {
    "itpn.embeddings.position_embeddings",
    "itpn.embeddings.mask_token",
    "itpn.encoder.layers.0.attention.relative_position_bias_table",
    "itpn.encoder.layers.1.attention.relative_position_bias_table",
    "aux_head.layers.0.attention.relative_position_bias_table",
    "aux_head.layers.1.attention.relative_position_bias_table",
}
_ITPN_PIXEL = {"itpn.embeddings.position_embeddings", "decoder.mask_token"}
_MVP = {
    "mvp.embeddings.cls_token",
    "mvp.embeddings.mask_token",
    "mvp.embeddings.position_embeddings",
    "mvp.shared_relative_position_bias.relative_position_bias_table",
    "mvp.layers.0.relative_position_bias.relative_position_bias_table",
    "mvp.layers.1.relative_position_bias.relative_position_bias_table",
}


@pytest.mark.parametrize(
    ("config", "exempt"),
    [
        (
            ITPNConfig.from_preset("itpn-tiny-test", pretraining_target="clip", use_relative_position_bias=True),
            _ITPN_CLIP,
        ),
        (ITPNConfig.from_preset("itpn-tiny-test"), _ITPN_PIXEL),
        (
            MVPConfig.from_preset("tiny", use_absolute_position_embeddings=True, use_relative_position_bias=True),
            _MVP,
        ),
    ],
    ids=["itpn-clip", "itpn-pixel", "mvp"],
)
def test_layer_decay_groups_honour_the_models_no_weight_decay(config, exempt):
    model = AutoModelForPreTraining.from_config(config)

    groups = build_parameter_groups(model, learning_rate=1.0, weight_decay=0.05, layer_decay=0.5)

    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    grouped = [name for group in groups for name in group["param_names"]]
    assert sorted(grouped) == sorted(trainable)  # every trainable parameter exactly once
    not_decayed = {name for group in groups if group["weight_decay"] == 0.0 for name in group["param_names"]}
    matrices_not_decayed = {name for name in not_decayed if trainable[name].ndim > 1 and not name.endswith(".bias")}
    assert matrices_not_decayed == exempt
    assert not_decayed == exempt | {name for name, p in trainable.items() if p.ndim == 1}
    # The exemption keeps each parameter's layer-wise learning rate: embeddings sit in the lowest layer.
    lowest = {name: group["lr"] for group in groups for name in group["param_names"]}
    embedding = next(name for name in exempt if ".embeddings." in name)
    assert lowest[embedding] == 0.5 ** (model.num_lr_decay_layers - 1)


def test_layer_decay_needs_the_model_interface():
    with pytest.raises(ValueError, match="get_layer_id_for_lr_decay"):
        build_parameter_groups(nn.Linear(2, 2), learning_rate=0.1, weight_decay=0.05, layer_decay=0.75)


def test_loss_curve_png_is_written(tmp_path):
    args = _args(tmp_path, logging_steps=1, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2)
    trainer = _trainer(args, callbacks=[LossCurveCallback()])

    trainer.train()

    curve = tmp_path / LOSS_CURVE_NAME
    assert curve.is_file() and curve.stat().st_size > 5_000
    with Image.open(curve) as image:
        assert image.size[0] > 400 and image.size[1] > 300
        assert np.unique(np.asarray(image.convert("L"))).size > 10  # drawn lines, not a blank canvas


def test_loss_curve_needs_a_logged_loss(tmp_path):
    assert plot_loss_curves([{"train_runtime": 1.0, "step": 1}], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


class _NonFiniteAux(ToyPretrainingModel):
    """Its `aux` part is NaN (the optimised total stays finite), as when one head of a multi-part loss diverges."""

    def forward(self, pixel_values, **kwargs):
        output = super().forward(pixel_values, **kwargs)
        output.losses["aux"] = output.losses["aux"] * float("nan")
        return output


def test_a_non_finite_loss_part_stops_training_naming_the_part(tmp_path):
    trainer = _trainer(_args(tmp_path), model=_NonFiniteAux(ToyPretrainingConfig()))
    with pytest.raises(FloatingPointError, match=r"\{'loss_aux': nan\}.*ending at step 2.*--stop_on_non_finite_loss"):
        trainer.train()


def test_non_finite_loss_parts_can_be_tolerated(tmp_path):
    trainer = _trainer(_args(tmp_path, stop_on_non_finite_loss=False), model=_NonFiniteAux(ToyPretrainingConfig()))
    trainer.train()
    logged = [line for line in trainer.state.log_history if "loss_aux" in line]
    assert len(logged) == 2 and all(np.isnan(line["loss_aux"]) for line in logged)
    assert all(np.isfinite(line["loss_pixel"]) for line in logged)


def test_raw_pixels_in_the_first_training_batch_stop_training(tmp_path):
    # models skip their per-forward value scan in training mode on accelerators; the Trainer scans one batch instead
    trainer = _trainer(_args(tmp_path))
    trainer.train_dataset = [{"pixel_values": (example["pixel_values"] * 40 + 128).clamp(0, 255)} for example in
                             toy_dataset(16)]  # fmt: skip
    with pytest.raises(ValueError, match=r"raw 0\.\.255.*image processor"):
        trainer.train()


def test_the_trainer_scans_pixels_once_per_run_not_per_step(tmp_path, monkeypatch):
    import hf_unified_pretrain.training.trainer as trainer_module

    scanned = []
    monkeypatch.setattr(trainer_module, "check_pixel_values", lambda pixel_values: scanned.append(pixel_values.shape))
    trainer = _trainer(_args(tmp_path, eval_strategy="steps", eval_steps=2))
    trainer.train()
    assert trainer.state.global_step == 4 and scanned == [torch.Size([2, 3, 2, 2])]
