"""Exponential-moving-average teachers and the Trainer callback that keeps them up to date.

`EMATeacher` is a frozen deep copy of (part of) the student, updated after every optimiser step as
`ema = m * ema + (1 - m) * student` with one fused `torch._foreach_lerp_` call rather than a Python loop over
tensors (one multi-tensor kernel instead of two launches per tensor on accelerators). The momentum `m` is constant or
follows a cosine from `base_momentum` to `end_momentum` over training (BYOL / MoCo v3 / SiameseIM style).

`EMACallback` (in `ema_callback.py`, imported lazily so models need not import the Trainer stack) drives the
updates from a `transformers.Trainer`, writes the EMA weights as safetensors into every checkpoint folder and
restores them when training resumes. Attach the EMA copy to the student with `TeacherHolderMixin.set_teacher` so it
never enters the student's `save_pretrained` output, optimiser or DDP.
"""

from __future__ import annotations

import copy
import math
import os

import torch
from safetensors.torch import load_model, save_model
from torch import nn

EMA_WEIGHTS_NAME = "ema_teacher.safetensors"
MOMENTUM_SCHEDULES = ("constant", "cosine")


def momentum_schedule(
    step: int, total_steps: int, base_momentum: float, end_momentum: float = 1.0, schedule: str = "cosine"
) -> float:
    """EMA momentum at optimiser step `step` (0-based).

    `"cosine"`: `end - (end - base) * (1 + cos(pi * step / total_steps)) / 2`, i.e. `base` at step 0 and `end` at
    `total_steps`; `"constant"`: always `base`.
    """
    if schedule not in MOMENTUM_SCHEDULES:
        raise ValueError(f"Unknown momentum schedule {schedule!r}; choose one of {list(MOMENTUM_SCHEDULES)}.")
    if schedule == "constant" or total_steps <= 0:
        return base_momentum
    progress = min(max(step / total_steps, 0.0), 1.0)
    return end_momentum - (end_momentum - base_momentum) * (1.0 + math.cos(math.pi * progress)) / 2.0


class EMATeacher(nn.Module):
    """A frozen EMA copy of a student module.

    Args:
        student: the module to track (a whole model or a sub-module such as the encoder); it is deep-copied.
        base_momentum: momentum at the start of training (or always, with `schedule="constant"`).
        end_momentum: momentum reached at the last step with the cosine schedule.
        schedule: `"constant"` or `"cosine"`.
        copy_buffers: copy the student's buffers (e.g. BatchNorm statistics) at each update instead of leaving
            the copy's own.
    """

    def __init__(
        self,
        student: nn.Module,
        base_momentum: float = 0.996,
        end_momentum: float = 1.0,
        schedule: str = "cosine",
        copy_buffers: bool = True,
    ) -> None:
        super().__init__()
        if schedule not in MOMENTUM_SCHEDULES:
            raise ValueError(f"Unknown momentum schedule {schedule!r}; choose one of {list(MOMENTUM_SCHEDULES)}.")
        for name, value in (("base_momentum", base_momentum), ("end_momentum", end_momentum)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}.")
        self.module = copy.deepcopy(student)
        self.module.requires_grad_(False)
        self.base_momentum = base_momentum
        self.end_momentum = end_momentum
        self.schedule = schedule
        self.copy_buffers = copy_buffers
        self.eval()

    def train(self, mode: bool = True) -> EMATeacher:
        """The EMA copy is a target network: it always runs in eval mode."""
        return super().train(False)

    def momentum_at(self, step: int, total_steps: int) -> float:
        """Momentum for optimiser step `step` (0-based) of `total_steps` under this teacher's schedule."""
        return momentum_schedule(step, total_steps, self.base_momentum, self.end_momentum, self.schedule)

    @torch.no_grad()
    def update(self, student: nn.Module, momentum: float) -> None:
        """`ema = momentum * ema + (1 - momentum) * student` for every parameter; buffers are copied.

        Args:
            student: the tracked module, with the same parameters (names, order, shapes) as the copy.
            momentum: in [0, 1]; 1 keeps the EMA unchanged, 0 copies the student.
        """
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}.")
        ema_parameters = list(self.module.parameters())
        student_parameters = list(student.parameters())
        if len(ema_parameters) != len(student_parameters):
            raise ValueError(
                f"EMA copy has {len(ema_parameters)} parameters but the student has {len(student_parameters)}: "
                "pass the same module the EMATeacher was built from."
            )
        if ema_parameters and ema_parameters[0].device != student_parameters[0].device:
            self.to(student_parameters[0].device)
        # Mixed-precision students may hold low-precision weights: the average is kept in the copy's own dtype.
        student_tensors = [s.detach().to(e.dtype) for e, s in zip(ema_parameters, student_parameters, strict=True)]
        torch._foreach_lerp_(ema_parameters, student_tensors, 1.0 - momentum)
        if self.copy_buffers:
            ema_buffers = list(self.module.buffers())
            student_buffers = list(student.buffers())
            if len(ema_buffers) != len(student_buffers):
                raise ValueError(
                    f"EMA copy has {len(ema_buffers)} buffers but the student has {len(student_buffers)}."
                )
            if ema_buffers:
                torch._foreach_copy_(
                    ema_buffers, [b.to(e.dtype) for e, b in zip(ema_buffers, student_buffers, strict=True)]
                )

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        """Runs the EMA copy without gradients (same call signature as the tracked module)."""
        return self.module(*args, **kwargs)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the EMA weights (parameters and persistent buffers) to a safetensors file."""
        save_model(self.module, str(path))

    def load(self, path: str | os.PathLike) -> None:
        """Reads EMA weights written by `save` (safetensors, strict key match)."""
        parameter = next(self.module.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        load_model(self.module, str(path), strict=True, device=str(device))
