"""Trainer callbacks for pre-training runs."""

from __future__ import annotations

from pathlib import Path

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
