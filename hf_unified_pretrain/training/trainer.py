"""`PretrainingTrainer`: a `transformers.Trainer` that logs every named loss part and decays LR layer by layer.

Every pre-training model of the package returns `loss` (the weighted total) and `losses` (a dict of named parts,
e.g. `{"feature": ..., "aux": ...}`). The Trainer only knows `loss`; this subclass also averages each part over the
logging interval (all micro-batches, so gradient accumulation is covered) and logs it as `loss_<part>`, and
evaluation reports `eval_loss_<part>` beside `eval_loss`. A part whose logged mean is NaN or infinite stops
training with a `FloatingPointError` naming it (`raise_on_non_finite_loss_parts`; `--stop_on_non_finite_loss false`
keeps going).

Optimiser parameter groups (`build_parameter_groups`) are method-agnostic: no weight decay on 1-d tensors
(biases, norm weights, layer-scale) and on what the model lists in `no_weight_decay()`; with `args.layer_decay` the
learning rate of a parameter is scaled by `layer_decay ** (num_lr_decay_layers - 1 - layer_id)`, where the model
provides `get_layer_id_for_lr_decay(name)` (0 = embeddings ... `num_lr_decay_layers - 1` = head).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from transformers import Trainer
from transformers.trainer_optimizer import is_optimizer_factory
from transformers.trainer_pt_utils import find_batch_size
from transformers.trainer_utils import EvalLoopOutput

from ..layers import check_pixel_values

LOSS_PART_PREFIX = "loss_"


def _no_weight_decay_names(model: nn.Module) -> set[str]:
    listed = getattr(model, "no_weight_decay", None)
    return set(listed()) if callable(listed) else set()


def _is_listed(name: str, listed: Iterable[str]) -> bool:
    # Models may list full names ("vit.embeddings.cls_token") or short ones ("cls_token", timm style).
    return any(name == entry or name.endswith("." + entry) for entry in listed)


def build_parameter_groups(
    model: nn.Module, learning_rate: float, weight_decay: float, layer_decay: float | None = None
) -> list[dict[str, Any]]:
    """Optimiser parameter groups with weight-decay exclusions and optional layer-wise LR decay.

    Args:
        model: the model to optimise; with `layer_decay` it must define `get_layer_id_for_lr_decay(name) -> int`
            and `num_lr_decay_layers` (ids run from 0 to `num_lr_decay_layers - 1`).
        learning_rate: peak learning rate (the last layer id gets exactly this).
        weight_decay: decay for matrices/kernels; 1-d tensors and `model.no_weight_decay()` get 0.
        layer_decay: None (off) or a factor in (0, 1].

    Returns:
        Groups sorted from the highest learning rate down, each with `params`, `param_names`, `weight_decay`,
        `lr`, `lr_scale` and `layer_id` (-1 without layer decay). Frozen parameters are left out.
    """
    if layer_decay is not None:
        if not callable(getattr(model, "get_layer_id_for_lr_decay", None)) or not hasattr(
            model, "num_lr_decay_layers"
        ):
            raise ValueError(
                f"--layer_decay needs a model defining `get_layer_id_for_lr_decay(param_name)` and "
                f"`num_lr_decay_layers`; {type(model).__name__} does not. Unset --layer_decay."
            )
        num_layers = int(model.num_lr_decay_layers)
    skip = _no_weight_decay_names(model)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        decays = parameter.ndim > 1 and not name.endswith(".bias") and not _is_listed(name, skip)
        layer_id, scale = -1, 1.0
        if layer_decay is not None:
            layer_id = int(model.get_layer_id_for_lr_decay(name))
            if not 0 <= layer_id < num_layers:
                raise ValueError(
                    f"get_layer_id_for_lr_decay({name!r}) = {layer_id} is outside "
                    f"[0, num_lr_decay_layers={num_layers})."
                )
            scale = layer_decay ** (num_layers - 1 - layer_id)
        group = groups.setdefault(
            (layer_id, decays),
            {
                "params": [],
                "param_names": [],
                "weight_decay": weight_decay if decays else 0.0,
                "lr": learning_rate * scale,
                "lr_scale": scale,
                "layer_id": layer_id,
            },
        )
        group["params"].append(parameter)
        group["param_names"].append(name)
    # The Trainer logs the first group's learning rate: put a full-rate group first.
    return [groups[key] for key in sorted(groups, key=lambda key: (-key[0], not key[1]))]


def raise_on_non_finite_loss_parts(parts: Mapping[str, float], step: int) -> None:
    """Raises a FloatingPointError naming every loss part whose logged mean is NaN or infinite.

    Checked where the Trainer logs (every `logging_steps`), so it costs no extra host sync; the Trainer itself
    only filters a non-finite total out of its running loss (`logging_nan_inf_filter`) and keeps training.
    """
    bad = {name: value for name, value in parts.items() if not math.isfinite(value)}
    if bad:
        raise FloatingPointError(
            f"Loss part(s) {bad} became non-finite in the logging interval ending at step {step}. Likely fixes: a "
            "lower learning rate or a longer warm-up, bf16 instead of fp16, gradient clipping (--max_grad_norm), "
            "and checking the data (models reject NaN pixel_values). Pass --stop_on_non_finite_loss false to keep "
            "training anyway."
        )


class _LossPartAverager:
    """Running (weighted) sums of named loss parts kept on device, so no host sync happens per step."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.weights: dict[str, float] = {}

    def add(self, losses: Mapping[str, Any], weight: float = 1.0) -> None:
        for name, value in losses.items():
            if value is None:
                continue
            value = torch.as_tensor(value).detach().float().mean() * weight
            self.sums[name] = self.sums[name] + value if name in self.sums else value
            self.weights[name] = self.weights.get(name, 0.0) + weight

    def pop_means(self, trainer: Trainer, prefix: str) -> dict[str, float]:
        """Means since the last call (summed over processes first), then reset."""
        means = {}
        for name in sorted(self.sums):
            total = torch.stack([self.sums[name], torch.tensor(self.weights[name], device=self.sums[name].device)])
            if trainer.accelerator.num_processes > 1:
                total = trainer.accelerator.reduce(total, reduction="sum")
            means[f"{prefix}{name}"] = (total[0] / total[1].clamp_min(1e-12)).item()
        self.sums.clear()
        self.weights.clear()
        return means


class PretrainingTrainer(Trainer):
    """`Trainer` for models returning `loss` + `losses`: per-part logging and layer-wise LR decay.

    Works with any model whose output has a `loss` (the total used for backward); `losses` is optional. Use with
    `PretrainingArguments` (or any `TrainingArguments`; `layer_decay` is read when present).
    """

    # Models return per-batch means, never sums over the accumulated batch: let the Trainer divide by the number of
    # gradient accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._train_loss_parts = _LossPartAverager()
        self._eval_loss_parts = _LossPartAverager()
        self._first_batch_scanned = False
        if getattr(self.args, "knn_eval_dir", None) is not None:
            # Every run script builds this trainer, so `--knn_eval_dir` works in all of them.
            from .pipeline import add_knn_evaluation  # pipeline imports this module

            add_knn_evaluation(self)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """Runs the model, returns its `loss` and records its `losses` parts for logging."""
        if model.training and not self._first_batch_scanned:
            # Models skip the per-forward value scan in training mode on accelerators (a host sync every step):
            # one scan of the first batch still catches raw 0..255 or NaN pixels from the data pipeline.
            pixel_values = inputs.get("pixel_values")
            if isinstance(pixel_values, torch.Tensor) and pixel_values.is_floating_point():
                check_pixel_values(pixel_values)
            self._first_batch_scanned = True
        outputs = model(**inputs)
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs[0]
        if loss is None:
            raise ValueError(
                f"{type(self.accelerator.unwrap_model(model)).__name__} returned no loss for inputs "
                f"{sorted(inputs)}: pre-training models must return `loss` (and `losses`)."
            )
        losses = outputs.get("losses") if isinstance(outputs, Mapping) else None
        if losses:
            if model.training:
                self._train_loss_parts.add(losses)
            else:
                # Evaluation averages over images (like `eval_loss`), so batches are weighted by their size.
                self._eval_loss_parts.add(losses, weight=float(find_batch_size(inputs) or 1))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the averaged loss parts to every training log line (the ones carrying `loss`)."""
        if "loss" in logs and not any(key.startswith("eval_") for key in logs):
            parts = self._train_loss_parts.pop_means(self, LOSS_PART_PREFIX)
            if getattr(self.args, "stop_on_non_finite_loss", True):
                raise_on_non_finite_loss_parts(parts, self.state.global_step)
            logs.update(parts)
        super().log(logs, start_time)

    def evaluation_loop(
        self,
        dataloader,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> EvalLoopOutput:
        """The Trainer's loop, plus `<prefix>_loss_<part>` metrics averaged over all evaluated images."""
        self._eval_loss_parts = _LossPartAverager()
        output = super().evaluation_loop(
            dataloader,
            description,
            prediction_loss_only=prediction_loss_only,
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
        output.metrics.update(self._eval_loss_parts.pop_means(self, f"{metric_key_prefix}_{LOSS_PART_PREFIX}"))
        return output

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """The configured optimiser over `build_parameter_groups` (weight-decay exclusions, layer-wise LR decay)."""
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            if self.optimizer_cls_and_kwargs is not None:
                optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
            else:
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            builds_own_groups = is_optimizer_factory(optimizer_cls) or any(
                key in optimizer_kwargs for key in ("params", "model", "optimizer_dict")
            )
            if builds_own_groups:
                # Optimisers that build their own groups (Muon/Dion factories, GaLore, LOMO): the Trainer's path.
                return super().create_optimizer(model)
            groups = build_parameter_groups(
                opt_model,
                learning_rate=self.args.learning_rate,
                weight_decay=self.args.weight_decay,
                layer_decay=getattr(self.args, "layer_decay", None),
            )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer
