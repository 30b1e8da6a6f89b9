"""Teachers that produce training targets: frozen HF vision models and EMA copies of the student.

Teachers are never part of a student's module tree (see `TeacherHolderMixin`), so they are never saved with it,
optimised, or wrapped by DDP.
"""

from .frozen import TEACHER_FEATURES, FrozenTeacher
from .holder import TeacherHolderMixin

__all__ = ["TEACHER_FEATURES", "FrozenTeacher", "TeacherHolderMixin"]
