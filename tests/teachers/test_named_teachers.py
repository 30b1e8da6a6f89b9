"""Named teacher slots: a student holds an EMA vision teacher and a frozen text encoder at once (M3I-style)."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors import safe_open
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    PreTrainedConfig,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.utils import ModelOutput

from hf_unified_pretrain.teachers import (
    DEFAULT_TEACHER,
    EMACallback,
    EMATeacher,
    FrozenTeacher,
    FrozenTextTeacher,
    TeacherHolderMixin,
)

VOCAB = 50


class ToyImageTextConfig(PreTrainedConfig):
    model_type = "toy_named_teachers_student"
    hidden_size: int = 8
    text_dim: int = 12


class ToyImageTextStudent(TeacherHolderMixin, PreTrainedModel):
    """Regresses an EMA copy of its own encoder and, through a head, a frozen text encoder's pooled features."""

    config_class = ToyImageTextConfig

    def __init__(self, config: ToyImageTextConfig):
        super().__init__(config)
        self.encoder = nn.Conv2d(3, config.hidden_size, kernel_size=8, stride=8)
        self.predictor = nn.Linear(config.hidden_size, config.hidden_size)
        self.text_head = nn.Linear(config.hidden_size, config.text_dim)
        self.post_init()

    def forward(self, pixel_values, input_ids, attention_mask):
        features = self.encoder(pixel_values).mean(dim=(2, 3))
        ema_targets = self.run_teacher("ema", pixel_values).mean(dim=(2, 3))
        text_targets = self.run_teacher("text", input_ids=input_ids, attention_mask=attention_mask)
        image_loss = ((self.predictor(features) - ema_targets) ** 2).mean()
        text_loss = ((self.text_head(features) - text_targets) ** 2).mean()
        return ModelOutput(loss=image_loss + text_loss)


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=12,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=16,
    )
    return BertModel(config).eval()


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert_text_teacher")
    tiny_bert().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_text_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip_text_teacher")
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        projection_dim=6,
    )
    CLIPTextModelWithProjection(config).save_pretrained(folder)
    return folder


def tokens(batch: int = 3, length: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids with right padding: the rows have 7, 5 and 3 real tokens."""
    input_ids = torch.randint(1, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    for row, padding in enumerate((0, 2, 4)[:batch]):
        if padding:
            attention_mask[row, -padding:] = 0
            input_ids[row, -padding:] = 0
    return input_ids, attention_mask


def pixels(batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def student(bert_folder):
    torch.manual_seed(0)
    model = ToyImageTextStudent(ToyImageTextConfig())
    model.set_teacher(EMATeacher(model.encoder, base_momentum=0.5, schedule="constant"), name="ema")
    model.set_teacher(FrozenTextTeacher.from_pretrained(bert_folder), name="text")
    return model


def test_two_named_slots_are_attached_but_never_part_of_the_student(student, tmp_path):
    assert set(student.teachers) == {"ema", "text"} and student.teacher is None
    assert isinstance(student.get_teacher("text"), FrozenTextTeacher)
    student_parameters = {id(p) for p in student.parameters()}
    for teacher in student.teachers.values():
        assert not any(id(p) in student_parameters for p in teacher.parameters())
        assert not any(p.requires_grad for p in teacher.parameters())
    expected_keys = {f"{m}.{p}" for m in ("encoder", "predictor", "text_head") for p in ("weight", "bias")}
    assert set(student.state_dict()) == expected_keys
    assert {name for name, _ in student.named_modules()} == {"", "encoder", "predictor", "text_head"}

    student.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as weights:
        assert set(weights.keys()) == expected_keys
    assert ToyImageTextStudent.from_pretrained(tmp_path).teachers == {}

    # A deep copy shares the teachers; emptying one slot leaves the other.
    copied = copy.deepcopy(student)
    assert copied.get_teacher("text") is student.get_teacher("text")
    student.set_teacher(None, name="ema")
    assert set(student.teachers) == {"text"} and set(copied.teachers) == {"ema", "text"}


def test_each_teacher_runs_on_its_own_inputs(student, bert_folder):
    input_ids, attention_mask = tokens()
    text = student.run_teacher("text", input_ids=input_ids, attention_mask=attention_mask)
    reference = tiny_bert()
    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        unmasked = reference(input_ids=input_ids).pooler_output
    torch.testing.assert_close(text, expected)
    assert text.shape == (3, 12) and not text.requires_grad
    # The mask reaches the encoder: the padded rows differ from an unmasked run, the full row does not.
    torch.testing.assert_close(text[0], unmasked[0])
    assert not torch.allclose(text[1:], unmasked[1:])

    images = pixels().double()
    ema = student.get_teacher("ema")
    targets = student.run_teacher("ema", images)
    torch.testing.assert_close(targets, ema.module(images))
    # Floating inputs move a teacher to their dtype; integer ids leave the text encoder in its own.
    assert next(ema.parameters()).dtype == torch.float64
    assert next(student.get_teacher("text").parameters()).dtype == torch.float32

    student.double()
    output = student(images, input_ids, attention_mask)
    output.loss.backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for t in student.teachers.values() for p in t.parameters())


def test_an_empty_slot_is_named():
    model = ToyImageTextStudent(ToyImageTextConfig())
    with pytest.raises(ValueError, match=r"needs the 'text' teacher.*set_teacher\(teacher, name='text'\)"):
        model.run_teacher("text", input_ids=torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="non-empty string"):
        model.set_teacher(nn.Identity(), name="")
    assert DEFAULT_TEACHER == "default"


def test_text_teacher_features_and_errors(clip_text_folder, bert_folder, clip_folder, text_folder):
    input_ids, attention_mask = tokens()
    projected = FrozenTextTeacher.from_pretrained(
        clip_text_folder, model_class="CLIPTextModelWithProjection", feature="text_embeds"
    )
    reference = CLIPTextModelWithProjection.from_pretrained(clip_text_folder).eval()
    with torch.no_grad():
        expected = reference(input_ids=input_ids, attention_mask=attention_mask)
    torch.testing.assert_close(projected(input_ids, attention_mask), expected.text_embeds)
    assert projected.feature_dim == 6 and projected(input_ids, attention_mask).shape == (3, 6)

    tokens_out = FrozenTextTeacher.from_pretrained(bert_folder, feature="last_hidden_state")(input_ids, attention_mask)
    assert tokens_out.shape == (3, 7, 12)
    assert FrozenTextTeacher.from_pretrained(text_folder).feature_dim == 32  # a CLIPTextModel via AutoModel

    with pytest.raises(ValueError, match="needs a model with a `text_projection`"):
        FrozenTextTeacher.from_pretrained(bert_folder, feature="text_embeds")
    with pytest.raises(ValueError, match="not a text model"):
        FrozenTextTeacher.from_pretrained(clip_folder)
    with pytest.raises(ValueError, match="FrozenTextTeacher"):
        FrozenTeacher.from_pretrained(bert_folder)


class RecordEncoder(TrainerCallback):
    def __init__(self):
        self.weights = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights.append({k: v.detach().clone() for k, v in model.encoder.state_dict().items()})


def test_ema_callback_drives_a_named_slot_beside_the_text_teacher(student, tmp_path):
    ema = student.get_teacher("ema")
    start = {k: v.detach().clone() for k, v in ema.module.state_dict().items()}
    dataset = []
    for index in range(4):
        input_ids, attention_mask = tokens(batch=1, seed=index)
        dataset.append(
            {
                "pixel_values": pixels(batch=1, seed=index)[0],
                "input_ids": input_ids[0],
                "attention_mask": attention_mask[0],
            }
        )
    record = RecordEncoder()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    callbacks = [record, EMACallback(ema, student="encoder", save_final=False)]
    Trainer(model=student, args=args, train_dataset=dataset, callbacks=callbacks).train()

    # Momentum 0.5 after each of the 2 steps: ema = 0.5 * ema + 0.5 * student.
    expected = start
    for weights in record.weights:
        expected = {k: 0.5 * expected[k] + 0.5 * weights[k] for k in expected}
    assert len(record.weights) == 2
    for key, value in ema.module.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    assert not torch.equal(ema.module.weight, start["weight"])
    assert student.get_teacher("ema") is ema and set(student.teachers) == {"ema", "text"}
