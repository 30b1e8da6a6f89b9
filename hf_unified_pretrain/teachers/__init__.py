"""Teachers that produce training targets: frozen HF vision or text models and EMA copies of the student.

Teachers are never part of a student's module tree (see `TeacherHolderMixin`, which holds several in named slots),
so they are never saved with it, optimised, or wrapped by DDP. `EMACallback` is imported on first access: it pulls in
the Trainer stack, which models (that import this package) do not need.
"""

from .ema import EMA_WEIGHTS_NAME, MOMENTUM_SCHEDULES, EMATeacher, momentum_schedule
from .frozen import TEACHER_FEATURES, TEXT_TEACHER_FEATURES, FrozenTeacher, FrozenTextTeacher
from .holder import DEFAULT_TEACHER, TeacherHolderMixin

__all__ = [
    "DEFAULT_TEACHER",
    "EMA_WEIGHTS_NAME",
    "MOMENTUM_SCHEDULES",
    "TEACHER_FEATURES",
    "TEXT_TEACHER_FEATURES",
    "EMACallback",
    "EMATeacher",
    "FrozenTeacher",
    "FrozenTextTeacher",
    "TeacherHolderMixin",
    "momentum_schedule",
]


def __getattr__(name: str):
    if name == "EMACallback":
        from .ema_callback import EMACallback

        return EMACallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
