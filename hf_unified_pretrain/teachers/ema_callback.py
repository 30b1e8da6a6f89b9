"""`EMACallback`: drives an `EMATeacher` from a `transformers.Trainer` and checkpoints it.

After every optimiser step (`on_step_end`) the EMA copy is updated with the scheduled momentum; every Trainer
checkpoint folder gets `ema_teacher.safetensors` (`on_save`), and on resume the file of the checkpoint being resumed is
loaded back (`on_train_begin`), so resuming does not lose the EMA state.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .ema import EMA_WEIGHTS_NAME, EMATeacher

logger = logging.getLogger(__name__)


class EMACallback(TrainerCallback):
    """Updates an `EMATeacher` after every optimiser step and checkpoints it with the Trainer.

    Args:
        ema: the EMA teacher to drive.
        student: the tracked module, or the dotted name of a sub-module of the trained model
            (e.g. `"encoder"`), or None for the whole model passed to the callback by the Trainer.
        filename: the safetensors file written into each checkpoint folder.
        save_final: also write the EMA weights into `output_dir` when training ends (beside, never inside, the
            student's `model.safetensors`).
    """

    def __init__(
        self,
        ema: EMATeacher,
        student: nn.Module | str | None = None,
        filename: str = EMA_WEIGHTS_NAME,
        save_final: bool = True,
    ) -> None:
        self.ema = ema
        self.student = student
        self.filename = filename
        self.save_final = save_final
        self.last_momentum: float | None = None

    def _student(self, model: nn.Module | None) -> nn.Module:
        if isinstance(self.student, nn.Module):
            return self.student
        if model is None:
            raise ValueError("EMACallback got no model from the Trainer; pass `student=` explicitly.")
        return model.get_submodule(self.student) if self.student else model

    def _resume_folder(self, args, state) -> Path | None:
        candidates = []
        if isinstance(getattr(args, "resume_from_checkpoint", None), str):
            candidates.append(Path(args.resume_from_checkpoint))
        candidates.append(Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        for folder in candidates:
            if (folder / self.filename).is_file():
                return folder
        return None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        student = self._student(model)
        parameter = next(student.parameters(), None)
        if parameter is not None:
            self.ema.to(parameter.device)
        if state.global_step > 0:
            folder = self._resume_folder(args, state)
            if folder is None:
                logger.warning(
                    "Resuming at step %d but no %s was found in the checkpoint: the EMA teacher restarts from its "
                    "current weights.",
                    state.global_step,
                    self.filename,
                )
            else:
                self.ema.load(folder / self.filename)
                logger.info("Restored the EMA teacher from %s", folder / self.filename)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # `global_step` has already been incremented: the update for optimiser step k (0-based) uses momentum(k).
        self.last_momentum = self.ema.momentum_at(state.global_step - 1, state.max_steps)
        self.ema.update(self._student(model), self.last_momentum)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            self.ema.save(folder / self.filename)

    def on_train_end(self, args, state, control, **kwargs):
        if self.save_final and state.is_world_process_zero:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
            self.ema.save(Path(args.output_dir) / self.filename)
