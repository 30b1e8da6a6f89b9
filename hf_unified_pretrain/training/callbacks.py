"""Trainer callbacks for pre-training runs: the loss-curve figure and online kNN accuracy."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import TrainerCallback

from .plots import plot_loss_curves

LOSS_CURVE_NAME = "loss_curve.png"


class LossCurveCallback(TrainerCallback):
    """Writes `loss_curve.png` (total loss, every `loss_<part>` and their eval values) into `output_dir`.

    The figure is redrawn at every checkpoint save and at the end of training, by the main process only.

    Args:
        filename: name of the PNG inside `args.output_dir`.
    """

    def __init__(self, filename: str = LOSS_CURVE_NAME) -> None:
        self.filename = filename

    def _draw(self, args, state) -> None:
        if state.is_world_process_zero:
            plot_loss_curves(
                state.log_history, Path(args.output_dir) / self.filename, title=Path(args.output_dir).name
            )

    def on_save(self, args, state, control, **kwargs):
        self._draw(args, state)

    def on_train_end(self, args, state, control, **kwargs):
        self._draw(args, state)


class KNNCallback(TrainerCallback):
    """Logs weighted-kNN accuracy of the model's frozen features every `every_n_steps` optimiser steps.

    A small labelled set is embedded by the model being trained (its encoder, in eval mode, without gradients):
    `bank_*` images are the labelled references, `query_*` images are classified against them (cosine similarity,
    `exp(sim / temperature)`-weighted votes of the `k` nearest). The accuracy is added to the training log line of
    that step as `knn_top1` (beside `loss` and the `loss_<part>` entries), so it lands in `trainer_state.json`'s
    log history and in every reporter. The random-number state, the model's train mode and the gradients are left
    as they were: adding the callback does not change training.

    Add it with `callback.add_to(trainer)` (first in the callback list, so printers and reporters see the value) or
    in `callbacks=[...]` (then only the log history gets it).

    Args:
        bank_pixel_values / bank_labels: (N, C, H, W) normalised images and (N,) labels.
        query_pixel_values / query_labels: (M, C, H, W) and (M,).
        every_n_steps: Evaluation period in optimiser steps.
        k / temperature: kNN neighbours and vote temperature.
        feature: Which pooled feature (`"pooled"`, or an intermediate such as `"hidden_states.2"`).
        batch_size: Images per forward pass.
        prefix: Prefix of the logged names (`knn_top1`, `knn_top5`).
    """

    def __init__(
        self,
        bank_pixel_values: torch.Tensor,
        bank_labels: torch.Tensor,
        query_pixel_values: torch.Tensor,
        query_labels: torch.Tensor,
        every_n_steps: int = 100,
        k: int = 20,
        temperature: float = 0.07,
        feature: str = "pooled",
        batch_size: int = 64,
        prefix: str = "knn_",
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}.")
        if bank_pixel_values.shape[0] != bank_labels.shape[0] or query_pixel_values.shape[0] != query_labels.shape[0]:
            raise ValueError("KNNCallback needs one label per bank image and one per query image.")
        self.bank_pixel_values, self.bank_labels = bank_pixel_values, bank_labels.long()
        self.query_pixel_values, self.query_labels = query_pixel_values, query_labels.long()
        self.every_n_steps = every_n_steps
        self.k, self.temperature, self.feature = k, temperature, feature
        self.batch_size, self.prefix = batch_size, prefix
        self.num_classes = int(max(self.bank_labels.max(), self.query_labels.max())) + 1
        self._pending: dict[str, float] | None = None

    def add_to(self, trainer) -> KNNCallback:
        """Puts the callback first in `trainer`'s list, so the printers and reporters that run after it log it."""
        trainer.callback_handler.callbacks.insert(0, self)
        return self

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """kNN accuracies of `model`'s features (`{"knn_top1": ..., "knn_top5": ...}`), RNG state untouched."""
        from ..evaluation import extract_features, knn_accuracy

        devices = [model.device] if getattr(model, "device", torch.device("cpu")).type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            intermediate = self.feature != "pooled"
            common = dict(batch_size=self.batch_size, intermediate=intermediate)
            bank = extract_features(model, self.bank_pixel_values, **common)
            queries = extract_features(model, self.query_pixel_values, **common)
        if self.feature not in bank:
            raise ValueError(f"KNNCallback feature {self.feature!r} is not among the model's {sorted(bank)}.")
        accuracy = knn_accuracy(
            bank[self.feature],
            self.bank_labels,
            queries[self.feature],
            self.query_labels,
            k=self.k,
            temperature=self.temperature,
            topk=(1, 5),
            num_classes=self.num_classes,
        )
        return {f"{self.prefix}{name}": value for name, value in accuracy.items()}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every_n_steps == 0:
            if state.is_world_process_zero and model is not None:
                self._pending = self.evaluate(model)
            control.should_log = True  # a training log line at this step carries the value
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._pending is not None and logs is not None and "loss" in logs:
            logs.update(self._pending)
            # The Trainer appended a copy of `logs` to the history just before calling the callbacks.
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update(self._pending)
            self._pending = None
        return control
