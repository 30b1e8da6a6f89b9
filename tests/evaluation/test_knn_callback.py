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
