"""Keeping a teacher beside a student model without making it part of the student.

A frozen teacher (CLIP, an EMA copy, ...) must follow the student's device, yet it must never appear in the
student's `state_dict` (so `save_pretrained` stays student-only), `parameters()` (so neither the optimiser nor DDP
sees it) or `modules()` (so `model.train()` cannot switch it out of eval mode). `nn.Module.__setattr__` registers
any module assigned to an attribute, so the teacher is kept in a small slot object the module machinery does not
look into.

Usage in a model::

    class MVPForPreTraining(TeacherHolderMixin, MVPPreTrainedModel):
        def forward(self, pixel_values, teacher_features=None, teacher_pixel_values=None, ...):
            if teacher_features is None:
                teacher_features = self._run_teacher(pixel_values, teacher_pixel_values)

    model.set_teacher(FrozenTeacher.from_pretrained(model.config.teacher_name_or_path))
"""

from __future__ import annotations

import inspect

import torch
from torch import nn


class _TeacherSlot:
    """Holds the teacher out of sight of `nn.Module`; copies and pickles of the student never duplicate it.

    Teachers are frozen (or updated in place by a callback), so a deep copy of the student (e.g. to build an EMA
    copy) shares the same teacher, and pickling the student (`torch.save(model)`) drops it.
    """

    __slots__ = ("module",)

    def __init__(self, module: nn.Module | None = None) -> None:
        self.module = module

    def __deepcopy__(self, memo: dict) -> _TeacherSlot:
        return self

    def __reduce__(self):
        return (_TeacherSlot, ())


class TeacherHolderMixin:
    """Mix into a `PreTrainedModel` to attach a teacher that is never saved, trained or wrapped with the student.

    The teacher is moved lazily to the device and floating dtype of the pixels it receives, so `model.to("cuda")`
    or `model.half()` need no extra call. Requires nothing from the host class besides being an `nn.Module`.
    """

    _TEACHER_SLOT_ATTRIBUTE = "_teacher_slot"

    def _get_teacher_slot(self) -> _TeacherSlot:
        slot = self.__dict__.get(self._TEACHER_SLOT_ATTRIBUTE)
        if slot is None:
            slot = _TeacherSlot()
            # `object.__setattr__` bypasses `nn.Module.__setattr__`, which would register a module as a child.
            object.__setattr__(self, self._TEACHER_SLOT_ATTRIBUTE, slot)
        return slot

    @property
    def teacher(self) -> nn.Module | None:
        """The attached teacher, or None."""
        return self._get_teacher_slot().module

    def set_teacher(self, teacher: nn.Module | None) -> None:
        """Attaches (or, with None, detaches) a teacher; it is frozen and put in eval mode.

        Args:
            teacher: any module mapping pixels to target features, typically a `FrozenTeacher`.
        """
        if teacher is not None:
            if not isinstance(teacher, nn.Module):
                raise TypeError(
                    f"set_teacher expects an nn.Module (e.g. a FrozenTeacher), got {type(teacher).__name__}."
                )
            teacher.requires_grad_(False)
            teacher.eval()
        # Replace the slot instead of mutating it: a deep copy of this model shares the old slot object.
        object.__setattr__(self, self._TEACHER_SLOT_ATTRIBUTE, _TeacherSlot(teacher))

    def _run_teacher(
        self, pixel_values: torch.Tensor | None, teacher_pixel_values: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Runs the attached teacher without gradients on the student's pixels (or on ready teacher pixels).

        Args:
            pixel_values: (B, C, H, W) the student's normalised input.
            teacher_pixel_values: optional (B, C, H', W') pixels already prepared for the teacher (its own
                normalisation/resolution); used instead of `pixel_values` when given.

        Returns:
            The teacher's output, typically (B, N, D) target features, detached.
        """
        teacher = self.teacher
        if teacher is None:
            raise ValueError(
                f"{type(self).__name__} needs teacher targets but no teacher is attached: call "
                "`model.set_teacher(FrozenTeacher.from_pretrained(model.config.teacher_name_or_path))` "
                "(a local folder), or pass precomputed `teacher_features`."
            )
        reference = teacher_pixel_values if teacher_pixel_values is not None else pixel_values
        if reference is None:
            raise ValueError("The teacher needs `pixel_values` or `teacher_pixel_values`; both are None.")
        _move_like(teacher, reference)
        if teacher.training:
            teacher.eval()
        with torch.no_grad():
            if teacher_pixel_values is None:
                features = teacher(pixel_values)
            elif "teacher_pixel_values" in inspect.signature(teacher.forward).parameters:
                features = teacher(pixel_values, teacher_pixel_values=teacher_pixel_values)
            else:  # a plain module (e.g. an EMATeacher) simply runs on the prepared view
                features = teacher(teacher_pixel_values)
        return features.detach() if isinstance(features, torch.Tensor) else features


def _move_like(module: nn.Module, reference: torch.Tensor) -> None:
    """Moves `module` to `reference`'s device and (for floating inputs) dtype, only when they differ."""
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    if tensor is None:
        return
    dtype = reference.dtype if reference.is_floating_point() else None
    if tensor.device != reference.device or (dtype is not None and tensor.dtype != dtype):
        module.to(device=reference.device, dtype=dtype)
