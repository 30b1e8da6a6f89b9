"""EMATeacher update math and schedule on hand-computed values; EMACallback inside a real Trainer with resume."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from safetensors import safe_open
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import ModelOutput

from hf_unified_pretrain.teachers import (
    EMA_WEIGHTS_NAME,
    EMACallback,
    EMATeacher,
    TeacherHolderMixin,
    momentum_schedule,
)


def test_cosine_and_constant_schedules():
    assert momentum_schedule(0, 4, 0.9, 1.0, "cosine") == pytest.approx(0.9)
    assert momentum_schedule(1, 4, 0.9, 1.0, "cosine") == pytest.approx(1.0 - 0.05 * (1.0 + math.sqrt(0.5)))
    assert momentum_schedule(2, 4, 0.9, 1.0, "cosine") == pytest.approx(0.95)
    assert momentum_schedule(4, 4, 0.9, 1.0, "cosine") == pytest.approx(1.0)
    assert momentum_schedule(3, 4, 0.9, 1.0, "constant") == pytest.approx(0.9)
    with pytest.raises(ValueError, match="Unknown momentum schedule"):
        momentum_schedule(0, 4, 0.9, 1.0, "linear")


def _linear(weight, bias) -> nn.Linear:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weight]))
        layer.bias.copy_(torch.tensor([bias]))
    return layer


def test_update_is_hand_computed_average():
    student = _linear([1.0, 2.0], 3.0)
    ema = EMATeacher(student, base_momentum=0.75, schedule="constant")
    with torch.no_grad():
        student.weight.copy_(torch.tensor([[3.0, 6.0]]))
        student.bias.fill_(5.0)

    ema.update(student, momentum=0.75)

    torch.testing.assert_close(ema.module.weight, torch.tensor([[1.5, 3.0]]))  # 0.75 * [1, 2] + 0.25 * [3, 6]
    torch.testing.assert_close(ema.module.bias, torch.tensor([3.5]))  # 0.75 * 3 + 0.25 * 5
    ema.update(student, momentum=1.0)
    torch.testing.assert_close(ema.module.bias, torch.tensor([3.5]))
    ema.update(student, momentum=0.0)
    torch.testing.assert_close(ema.module.weight, student.weight.detach())


def test_buffers_are_copied_and_copy_is_frozen():
    student = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMATeacher(student)
    student.train()
    student(torch.randn(4, 2))  # moves BatchNorm running statistics

    ema.update(student, momentum=0.5)
    ema.train()

    torch.testing.assert_close(ema.module[1].running_mean, student[1].running_mean)
    assert ema.module[1].num_batches_tracked.item() == 1
    assert not ema.training and not ema.module[1].training
    assert all(not p.requires_grad for p in ema.parameters())
    assert all(p.requires_grad for p in student.parameters())
    assert not ema(torch.randn(3, 2)).requires_grad


def test_update_rejects_another_module_and_bad_momentum():
    ema = EMATeacher(_linear([1.0, 2.0], 3.0))
    with pytest.raises(ValueError, match="same module"):
        ema.update(nn.Sequential(nn.Linear(2, 1), nn.Linear(1, 1)), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ema.update(_linear([1.0, 2.0], 3.0), 1.5)


# --- EMACallback in a real Trainer -------------------------------------------------------------------------------


class ToyBYOLConfig(PreTrainedConfig):
    model_type = "toy_ema_student"
    hidden_size: int = 4


@dataclass
class ToyOutput(ModelOutput):
    loss: torch.Tensor | None = None


class ToyBYOL(TeacherHolderMixin, PreTrainedModel):
    """Student encoder regressing the EMA copy of itself (BYOL-like), the EMA held outside the module tree."""

    config_class = ToyBYOLConfig

    def __init__(self, config):
        super().__init__(config)
        self.encoder = nn.Sequential(
            nn.Flatten(), nn.Linear(12, config.hidden_size), nn.BatchNorm1d(config.hidden_size)
        )
        self.predictor = nn.Linear(config.hidden_size, config.hidden_size)
        self.post_init()

    def forward(self, pixel_values):
        targets = self._run_teacher(pixel_values)
        return ToyOutput(loss=((self.predictor(self.encoder(pixel_values)) - targets) ** 2).mean())


class RecordEncoder(TrainerCallback):
    def __init__(self):
        self.weights = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights.append({k: v.detach().clone() for k, v in model.encoder.state_dict().items()})


def _dataset(n=8):
    generator = torch.Generator().manual_seed(1)
    return [{"pixel_values": torch.randn(3, 2, 2, generator=generator)} for _ in range(n)]


def _trainer(tmp_path, momentum=0.5, **overrides):
    torch.manual_seed(0)
    model = ToyBYOL(ToyBYOLConfig())
    ema = EMATeacher(model.encoder, base_momentum=momentum, schedule="constant")
    model.set_teacher(ema)
    record = RecordEncoder()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=4,
        per_device_train_batch_size=2,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        save_strategy="steps",
        save_steps=2,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        **overrides,
    )
    callbacks = [record, EMACallback(ema, student="encoder")]
    trainer = Trainer(model=model, args=args, train_dataset=_dataset(), callbacks=callbacks)
    return trainer, model, ema, record


def _state(ema):
    return {k: v.detach().clone() for k, v in ema.module.state_dict().items()}


def test_callback_updates_after_each_step_and_checkpoints(tmp_path):
    trainer, model, ema, record = _trainer(tmp_path)
    expected = {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}

    trainer.train()

    # Replay ema_k = 0.5 * ema_{k-1} + 0.5 * student_k for parameters; buffers follow the student.
    parameter_names = {name for name, _ in model.encoder.named_parameters()}
    assert len(record.weights) == 4
    for weights in record.weights:
        for name, value in weights.items():
            expected[name] = 0.5 * expected[name] + 0.5 * value if name in parameter_names else value
    for name, value in _state(ema).items():
        torch.testing.assert_close(value, expected[name], msg=name)

    for step in (2, 4):
        checkpoint = tmp_path / f"checkpoint-{step}"
        assert (checkpoint / EMA_WEIGHTS_NAME).is_file()
        with safe_open(checkpoint / "model.safetensors", framework="pt") as weights:
            assert all(key.startswith(("encoder.", "predictor.")) for key in weights.keys())  # noqa: SIM118 (safe_open is not iterable)
        with safe_open(checkpoint / EMA_WEIGHTS_NAME, framework="pt") as weights:
            assert set(weights.keys()) == set(ema.module.state_dict())
    assert (tmp_path / EMA_WEIGHTS_NAME).is_file()


def test_resume_restores_ema_state(tmp_path):
    first, _, first_ema, _ = _trainer(tmp_path)
    first.train()
    final_ema = _state(first_ema)
    with safe_open(tmp_path / "checkpoint-2" / EMA_WEIGHTS_NAME, framework="pt") as weights:
        ema_at_step_2 = {key: weights.get_tensor(key) for key in weights.keys()}  # noqa: SIM118

    resumed, _, resumed_ema, _ = _trainer(tmp_path)
    restored = {}

    class Peek(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if not restored:
                restored.update(_state(resumed_ema))

    resumed.add_callback(Peek())
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))

    for name, value in ema_at_step_2.items():
        torch.testing.assert_close(restored[name], value, msg=name)
    for name, value in final_ema.items():
        torch.testing.assert_close(_state(resumed_ema)[name], value, msg=name)
