"""TeacherHolderMixin: the teacher follows the student's inputs but is never saved, optimised or copied."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from safetensors import safe_open
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from hf_unified_pretrain.teachers import FrozenTeacher, TeacherHolderMixin


class ToyStudentConfig(PreTrainedConfig):
    model_type = "toy_teacher_holder_student"
    hidden_size: int = 16
    teacher_name_or_path: str | None = None


class ToyStudent(TeacherHolderMixin, PreTrainedModel):
    config_class = ToyStudentConfig

    def __init__(self, config: ToyStudentConfig):
        super().__init__(config)
        self.patch_embed = nn.Conv2d(3, config.hidden_size, kernel_size=8, stride=8)
        self.post_init()

    def forward(self, pixel_values, teacher_pixel_values=None):
        predictions = self.patch_embed(pixel_values).flatten(2).transpose(1, 2)
        targets = self._run_teacher(pixel_values, teacher_pixel_values)
        return ((predictions - targets) ** 2).mean()


@pytest.fixture
def student_with_teacher(clip_folder):
    student = ToyStudent(ToyStudentConfig(teacher_name_or_path=str(clip_folder)))
    student.set_teacher(FrozenTeacher.from_pretrained(clip_folder))
    return student


def test_teacher_is_not_in_module_tree_or_parameters(student_with_teacher):
    student = student_with_teacher
    student_parameters = {id(p) for p in student.parameters()}

    assert student.teacher is not None
    assert not any(id(p) in student_parameters for p in student.teacher.parameters())
    assert set(student.state_dict()) == {"patch_embed.weight", "patch_embed.bias"}
    assert all(not name.startswith("teacher") for name, _ in student.named_modules())


def test_save_pretrained_has_no_teacher_keys(student_with_teacher, tmp_path):
    student_with_teacher.save_pretrained(tmp_path)

    with safe_open(tmp_path / "model.safetensors", framework="pt") as weights:
        assert set(weights.keys()) == {"patch_embed.weight", "patch_embed.bias"}
    reloaded = ToyStudent.from_pretrained(tmp_path)
    assert reloaded.teacher is None
    assert reloaded.config.teacher_name_or_path == student_with_teacher.config.teacher_name_or_path


def test_train_mode_and_gradients_never_reach_teacher(student_with_teacher):
    student = student_with_teacher
    student.train()

    loss = student(torch.randn(2, 3, 32, 32))
    loss.backward()

    assert not student.teacher.training
    assert student.patch_embed.weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in student.teacher.parameters())


def test_teacher_follows_input_dtype(student_with_teacher):
    student = student_with_teacher.to(torch.float64)

    student(torch.randn(1, 3, 32, 32, dtype=torch.float64))

    assert next(student.teacher.parameters()).dtype == torch.float64


@pytest.mark.skipif(
    not torch.backends.mps.is_available() and not torch.cuda.is_available(), reason="needs an accelerator"
)
def test_teacher_follows_input_device(student_with_teacher):  # pragma: no cover - CPU-only CI
    device = "cuda" if torch.cuda.is_available() else "mps"
    student = student_with_teacher.to(device)
    student(torch.randn(1, 3, 32, 32, device=device))
    assert next(student.teacher.parameters()).device.type == device


def test_teacher_follows_input_device_with_meta_tensors(student_with_teacher):
    """A device move on CPU-only machines: the meta device stands in for an accelerator."""
    teacher = student_with_teacher.teacher
    from hf_unified_pretrain.teachers.holder import _move_like

    _move_like(teacher, torch.empty(1, device="meta"))

    assert next(teacher.parameters()).device.type == "meta"


def test_ready_teacher_pixels_are_passed_on(student_with_teacher):
    student = student_with_teacher
    pixel_values = torch.randn(1, 3, 32, 32)
    teacher_pixels = torch.randn(1, 3, 32, 32)

    from_student = student._run_teacher(pixel_values)
    from_ready = student._run_teacher(pixel_values, teacher_pixels)

    torch.testing.assert_close(from_ready, student.teacher(teacher_pixel_values=teacher_pixels))
    assert not torch.allclose(from_student, from_ready)


def test_deep_copy_shares_teacher_and_pickle_drops_it(student_with_teacher):
    student = student_with_teacher

    copied = copy.deepcopy(student)
    unpickled = pickle.loads(pickle.dumps(student))

    assert copied.teacher is student.teacher
    assert unpickled.teacher is None
    copied.set_teacher(None)
    assert copied.teacher is None and student.teacher is not None


def test_missing_teacher_error():
    student = ToyStudent(ToyStudentConfig())
    with pytest.raises(ValueError, match="set_teacher.*teacher_features"):
        student(torch.randn(1, 3, 32, 32))
    with pytest.raises(TypeError, match="nn.Module"):
        student.set_teacher("openai/clip")


def test_plain_teacher_runs_on_the_prepared_view():
    student = ToyStudent(ToyStudentConfig())
    student.set_teacher(nn.Sequential(nn.Conv2d(3, 16, kernel_size=8, stride=8), nn.Flatten(2)))
    pixel_values, teacher_pixels = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)

    features = student._run_teacher(pixel_values, teacher_pixels)

    torch.testing.assert_close(features, student.teacher(teacher_pixels))
    assert not features.requires_grad
