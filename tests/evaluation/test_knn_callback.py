"""KNNCallback: logs kNN accuracy beside the loss parts without changing training (tiny iTPN, tiny images)."""

from __future__ import annotations

import pytest
import torch

from hf_unified_pretrain.models.itpn import ITPNConfig, ITPNForPreTraining
from hf_unified_pretrain.training import PretrainingArguments, PretrainingTrainer
from hf_unified_pretrain.training.callbacks import KNNCallback


def _labelled_images(num_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes told apart by their mean colour (plus noise)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat(num_per_class)
    colours = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    pixels = colours[labels][:, :, None, None] + 0.5 * torch.randn(labels.shape[0], 3, 32, 32, generator=generator)
    return pixels, labels


def _train(tmp_path, callback: KNNCallback | None, steps: int = 4):
    torch.manual_seed(0)
    model = ITPNForPreTraining(ITPNConfig.from_preset("itpn-tiny-test"))
    pixels, _ = _labelled_images(4, seed=3)
    args = PretrainingArguments(
        output_dir=str(tmp_path),
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=2,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    trainer = PretrainingTrainer(model=model, args=args, train_dataset=[{"pixel_values": p} for p in pixels])
    if callback is not None:
        callback.add_to(trainer)
    trainer.train()
    return trainer


def _callback(every_n_steps: int) -> KNNCallback:
    bank, bank_labels = _labelled_images(4, seed=1)
    queries, query_labels = _labelled_images(2, seed=2)
    return KNNCallback(bank, bank_labels, queries, query_labels, every_n_steps=every_n_steps, k=3, temperature=0.1)


def test_knn_is_logged_beside_the_loss_parts_and_training_is_unchanged(tmp_path):
    watched = _train(tmp_path / "watched", _callback(every_n_steps=3))
    reference = _train(tmp_path / "reference", None)

    lines = [line for line in watched.state.log_history if "loss" in line]
    # Steps 2 and 4 from logging_steps; step 3 is logged because the callback evaluated there.
    assert [line["step"] for line in lines] == [2, 3, 4]
    (knn_line,) = [line for line in lines if "knn_top1" in line]
    assert knn_line["step"] == 3
    assert 0.0 <= knn_line["knn_top1"] <= knn_line["knn_top5"] <= 1.0
    assert "loss_pixel" in knn_line  # beside the loss parts, in the same log line
    # Same losses and weights as without the callback: no random numbers taken, train mode kept.
    assert lines[0]["loss"] == next(line["loss"] for line in reference.state.log_history if line["step"] == 2)
    for (name, value), (_, expected) in zip(
        watched.model.state_dict().items(), reference.model.state_dict().items(), strict=True
    ):
        assert torch.equal(value, expected), name


def test_evaluate_keeps_mode_gradients_and_rng(tmp_path):
    callback = _callback(every_n_steps=1)
    model = ITPNForPreTraining(ITPNConfig.from_preset("itpn-tiny-test")).train()
    state = torch.random.get_rng_state()
    result = callback.evaluate(model)
    assert model.training and torch.equal(torch.random.get_rng_state(), state)
    assert all(parameter.grad is None for parameter in model.parameters())
    assert set(result) == {"knn_top1", "knn_top5"} and 0.0 <= result["knn_top1"] <= 1.0
    # The colour classes are separable from pooled features of even a random network: well above chance (1/3).
    assert result["knn_top1"] > 0.5
    assert callback.evaluate(model.eval()) == result and not model.training


def test_bad_arguments_are_clear_errors():
    pixels, labels = _labelled_images(1, seed=0)
    with pytest.raises(ValueError, match="every_n_steps"):
        KNNCallback(pixels, labels, pixels, labels, every_n_steps=0)
    with pytest.raises(ValueError, match="one label per bank image"):
        KNNCallback(pixels, labels[:2], pixels, labels)
    callback = KNNCallback(pixels, labels, pixels, labels, feature="hidden_states.9")
    with pytest.raises(ValueError, match="not among the model's"):
        callback.evaluate(ITPNForPreTraining(ITPNConfig.from_preset("itpn-tiny-test")))


def _write_colour_folder(root, num_per_class: int, seed: int) -> None:
    """PNG images of the three colour classes of `_labelled_images`, one sub-folder per class."""
    from PIL import Image

    pixels, labels = _labelled_images(num_per_class, seed)
    images = ((pixels * 0.25 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for index, (image, label) in enumerate(zip(images, labels.tolist(), strict=True)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:03d}.png")


def test_knn_eval_dir_flag_of_a_run_script_logs_knn_accuracy(tmp_path):
    from tests.scripts.conftest import SMOKE_TRAIN_ARGS, load_script

    _write_colour_folder(tmp_path / "knn" / "train", 4, seed=1)
    _write_colour_folder(tmp_path / "knn" / "test", 2, seed=2)
    output = tmp_path / "run"
    trainer = load_script("run_itpn")["setup"](
        [
            "--preset",
            "itpn-tiny-test",
            "--output_dir",
            str(output),
            "--max_steps",
            "4",
            "--knn_eval_dir",
            str(tmp_path / "knn"),
            "--knn_eval_steps",
            "2",
            "--knn_bank_size",
            "9",
            "--knn_query_size",
            "5",
            *SMOKE_TRAIN_ARGS,
        ]
    ).trainer
    (callback,) = [c for c in trainer.callback_handler.callbacks if isinstance(c, KNNCallback)]
    assert trainer.callback_handler.callbacks[0] is callback  # first: the printed log line carries the value
    # Class-balanced subsets of train/ (bank) and test/ (queries), at the model's input size.
    assert callback.bank_labels.tolist() == [0, 1, 2] * 3 and callback.query_labels.tolist() == [0, 1, 2, 0, 1]
    assert callback.bank_pixel_values.shape == (9, 3, 32, 32) and callback.every_n_steps == 2
    trainer.train()
    knn_lines = {line["step"]: line for line in trainer.state.log_history if "knn_top1" in line}
    assert sorted(knn_lines) == [2, 4]
    assert all("loss_pixel" in line and 0.0 <= line["knn_top1"] <= line["knn_top5"] for line in knn_lines.values())
    assert knn_lines[4]["knn_top1"] > 0.5  # colour classes: well above chance (1/3) even for a barely trained model


def test_knn_callback_from_one_class_folder_splits_bank_and_queries(tmp_path):
    from hf_unified_pretrain.models.registry import image_processor_for
    from hf_unified_pretrain.training.pipeline import knn_callback_from_folder

    _write_colour_folder(tmp_path, 3, seed=0)
    processor = image_processor_for(ITPNConfig.from_preset("itpn-tiny-test"))
    callback = knn_callback_from_folder(tmp_path, processor, every_n_steps=5, bank_size=6, query_size=2)
    assert callback.bank_labels.tolist() == [0, 1, 2, 0, 1, 2] and callback.query_labels.tolist() == [0, 1]
    # The queries are the images after the bank ones: the third image of classes 0 and 1.
    assert not any(torch.equal(q, b) for q in callback.query_pixel_values for b in callback.bank_pixel_values)
    with pytest.raises(ValueError, match="no query image is left"):
        knn_callback_from_folder(tmp_path, processor, bank_size=9)


def test_knn_eval_flags_reject_bad_values(tmp_path):
    with pytest.raises(FileNotFoundError, match="--knn_eval_dir"):
        PretrainingArguments(output_dir=str(tmp_path), knn_eval_dir=str(tmp_path / "missing"), use_cpu=True)
    with pytest.raises(ValueError, match="--knn_eval_steps must be at least 1"):
        PretrainingArguments(output_dir=str(tmp_path), knn_eval_steps=0, use_cpu=True)
