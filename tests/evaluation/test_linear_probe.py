"""Linear probe: perfect on separable data, chance on shuffled labels, reproducible with a seed."""

from __future__ import annotations

import pytest
import torch

from hf_unified_pretrain.evaluation import linear_probe


def _clusters(num_per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Three well separated Gaussian clusters in 6-d, dimensions on very different scales (standardisation)."""
    centres = torch.tensor([[4.0, 0, 0, 0, 0, 0], [0, 4.0, 0, 0, 0, 0], [0, 0, 4.0, 0, 0, 0]])
    labels = torch.arange(3).repeat_interleave(num_per_class)
    features = centres[labels] + 0.5 * torch.randn(labels.shape[0], 6, generator=generator)
    return features * torch.tensor([1000.0, 1.0, 0.01, 1.0, 1.0, 1.0]) + 50.0, labels


def test_separable_data_is_classified_perfectly():
    generator = torch.Generator().manual_seed(0)
    train, train_labels = _clusters(40, generator)
    test, test_labels = _clusters(30, generator)
    result = linear_probe(train, train_labels, test, test_labels, epochs=30, batch_size=32)
    assert result.train_accuracy == 1.0 and result.accuracy == 1.0
    torch.testing.assert_close(result.mean, train.mean(dim=0))
    torch.testing.assert_close(result.std, train.std(dim=0, unbiased=False))
    assert torch.equal(result.predict(test), test_labels)


def test_shuffled_labels_give_chance_accuracy():
    generator = torch.Generator().manual_seed(1)
    train = torch.randn(400, 16, generator=generator)
    test = torch.randn(1000, 16, generator=generator)
    train_labels = torch.randint(0, 4, (400,), generator=generator)
    test_labels = torch.randint(0, 4, (1000,), generator=generator)
    result = linear_probe(train, train_labels, test, test_labels, epochs=50)
    # Chance is 1/4; 1000 test points put 3 standard deviations at +-0.041.
    assert 0.25 - 0.05 < result.accuracy < 0.25 + 0.05
    assert result.train_accuracy > 0.35  # the probe did fit its (meaningless) training labels


def test_same_seed_same_probe_other_seed_other_batches():
    generator = torch.Generator().manual_seed(2)
    train, labels = torch.randn(100, 8, generator=generator), torch.randint(0, 3, (100,), generator=generator)
    first = linear_probe(train, labels, train, labels, epochs=3, batch_size=16, seed=5)
    again = linear_probe(train, labels, train, labels, epochs=3, batch_size=16, seed=5)
    other = linear_probe(train, labels, train, labels, epochs=3, batch_size=16, seed=6)
    assert torch.equal(first.classifier.weight, again.classifier.weight)
    assert not torch.equal(first.classifier.weight, other.classifier.weight)


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="same D"):
        linear_probe(torch.ones(4, 3), torch.zeros(4), torch.ones(2, 5), torch.zeros(2))
    with pytest.raises(ValueError, match="one label per feature row"):
        linear_probe(torch.ones(4, 3), torch.zeros(3), torch.ones(2, 3), torch.zeros(2))
