"""Keeping teachers beside a student model without making them part of the student.

A frozen teacher (CLIP, a text encoder, an EMA copy, ...) must follow the student's device, yet it must never appear
in the student's `state_dict` (so `save_pretrained` stays student-only), `parameters()` (so neither the optimiser nor
DDP sees it) or `modules()` (so `model.train()` cannot switch it out of eval mode). `nn.Module.__setattr__` registers
any module assigned to an attribute, so teachers are kept in a small slot object the module machinery does not look
into. A student may hold several teachers at once in named slots (e.g. M3I: an EMA vision teacher and a frozen text
encoder; iTPN: a CLIP teacher and a masked-feature-modelling teacher).

Usage in a model::

    class MVPForPreTraining(TeacherHolderMixin, MVPPreTrainedModel):
        def forward(self, pixel_values, teacher_features=None, teacher_pixel_values=None, ...):
            if teacher_features is None:
                teacher_features = self._run_teacher(pixel_values, teacher_pixel_values)

    model.set_teacher(FrozenTeacher.from_pretrained(model.config.teacher_name_or_path))  # the "default" slot
    model.set_teacher(FrozenTextTeacher.from_pretrained(text_folder), name="text")
    text_features = model.run_teacher("text", input_ids=input_ids, attention_mask=attention_mask)
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

DEFAULT_TEACHER = "default"


class _TeacherSlots:
    """Holds the named teachers out of sight of `nn.Module`; copies and pickles of the student never duplicate them.

    Teachers are frozen (or updated in place by a callback), so a deep copy of the student (e.g. to build an EMA
    copy) shares the same teachers, and pickling the student (`torch.save(model)`) drops them.
    """

    __slots__ = ("teachers",)

    def __init__(self, teachers: Mapping[str, nn.Module] | None = None) -> None:
        self.teachers = dict(teachers or {})

    def __deepcopy__(self, memo: dict) -> _TeacherSlots:
        return self

    def __reduce__(self):
        return (_TeacherSlots, ())


class TeacherHolderMixin:
    """Mix into a `PreTrainedModel` to attach teachers that are never saved, trained or wrapped with the student.

    Teachers live in named slots (`set_teacher(teacher, name=...)`; `"default"` when no name is given) and are moved
    lazily to the device (and, for floating inputs, the dtype) of the inputs they receive, so `model.to("cuda")` or
    `model.half()` need no extra call. Requires nothing from the host class besides being an `nn.Module`.
    """

    _TEACHER_SLOTS_ATTRIBUTE = "_teacher_slots"

    def _get_teacher_slots(self) -> _TeacherSlots:
        slots = self.__dict__.get(self._TEACHER_SLOTS_ATTRIBUTE)
        if slots is None:
            slots = _TeacherSlots()
            # `object.__setattr__` bypasses `nn.Module.__setattr__`, which would register a module as a child.
            object.__setattr__(self, self._TEACHER_SLOTS_ATTRIBUTE, slots)
        return slots

    @property
    def teacher(self) -> nn.Module | None:
        """The teacher in the `"default"` slot, or None."""
        return self.get_teacher(DEFAULT_TEACHER)

    @property
    def teachers(self) -> dict[str, nn.Module]:
        """All attached teachers by slot name (a copy: attach and detach with `set_teacher`)."""
        return dict(self._get_teacher_slots().teachers)

    def get_teacher(self, name: str = DEFAULT_TEACHER) -> nn.Module | None:
        """The teacher in slot `name`, or None."""
        return self._get_teacher_slots().teachers.get(name)

    def set_teacher(self, teacher: nn.Module | None, name: str = DEFAULT_TEACHER) -> None:
        """Attaches a teacher to slot `name` (or, with None, empties that slot); it is frozen and put in eval mode.

        Args:
            teacher: any module producing targets, e.g. a `FrozenTeacher` (vision), a `FrozenTextTeacher` (text) or an
                `EMATeacher`.
            name: the slot; other slots are left as they are.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"A teacher slot name must be a non-empty string, got {name!r}.")
        if teacher is not None:
            if not isinstance(teacher, nn.Module):
                raise TypeError(
                    f"set_teacher expects an nn.Module (e.g. a FrozenTeacher), got {type(teacher).__name__}."
                )
            teacher.requires_grad_(False)
            teacher.eval()
        teachers = self.teachers
        if teacher is None:
            teachers.pop(name, None)
        else:
            teachers[name] = teacher
        # Replace the slots object instead of mutating it: a deep copy of this model shares the old one.
        object.__setattr__(self, self._TEACHER_SLOTS_ATTRIBUTE, _TeacherSlots(teachers))

    def _required_teacher(self, name: str, teacher_expression: str, alternative: str = "first") -> nn.Module:
        """The teacher of slot `name`; an empty slot is a ValueError showing the `set_teacher` call that fills it."""
        teacher = self.get_teacher(name)
        if teacher is None:
            slot = "" if name == DEFAULT_TEACHER else f", name={name!r}"
            raise ValueError(
                f"{type(self).__name__} needs the {name!r} teacher but no teacher is attached there (attached: "
                f"{sorted(self.teachers) or 'none'}): call `model.set_teacher({teacher_expression}{slot})` "
                f"{alternative}."
            )
        return teacher

    def run_teacher(self, name: str = DEFAULT_TEACHER, /, *args: Any, **inputs: Any) -> Any:
        """Runs the teacher of slot `name` without gradients on the given inputs.

        The teacher is first moved to the device of the first tensor input (and to its dtype if floating, so a text
        encoder given `input_ids` keeps its own dtype).

        Args:
            name: the slot.
            *args, **inputs: whatever the teacher takes, e.g. `pixel_values` or `input_ids=..., attention_mask=...`.

        Returns:
            The teacher's output (a tensor is detached).
        """
        teacher = self._required_teacher(name, "teacher")
        reference = next((value for value in (*args, *inputs.values()) if isinstance(value, torch.Tensor)), None)
        if reference is None:
            raise ValueError(f"The {name!r} teacher got no tensor input.")
        _move_like(teacher, reference)
        if teacher.training:
            teacher.eval()
        with torch.no_grad():
            output = teacher(*args, **inputs)
        return output.detach() if isinstance(output, torch.Tensor) else output

    def _run_teacher(
        self,
        pixel_values: torch.Tensor | None,
        teacher_pixel_values: torch.Tensor | None = None,
        name: str = DEFAULT_TEACHER,
    ) -> torch.Tensor:
        """Runs a vision teacher on the student's pixels (or on ready teacher pixels).

        Args:
            pixel_values: (B, C, H, W) the student's normalised input.
            teacher_pixel_values: optional (B, C, H', W') pixels already prepared for the teacher (its own
                normalisation/resolution); used instead of `pixel_values` when given.
            name: the teacher slot.

        Returns:
            The teacher's output, typically (B, N, D) target features, detached.
        """
        teacher = self._required_teacher(
            name,
            "FrozenTeacher.from_pretrained(model.config.teacher_name_or_path)",
            "(a local folder), or pass precomputed `teacher_features`",
        )
        if teacher_pixel_values is None and pixel_values is None:
            raise ValueError("The teacher needs `pixel_values` or `teacher_pixel_values`; both are None.")
        if teacher_pixel_values is None:
            return self.run_teacher(name, pixel_values)
        if "teacher_pixel_values" in inspect.signature(teacher.forward).parameters:
            return self.run_teacher(name, pixel_values, teacher_pixel_values=teacher_pixel_values)
        # a plain module (e.g. an EMATeacher) simply runs on the prepared view
        return self.run_teacher(name, teacher_pixel_values)


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
