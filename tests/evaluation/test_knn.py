"""Weighted kNN: hand-computed votes where k and the temperature change the prediction."""

from __future__ import annotations

import math

import pytest
import torch

from hf_unified_pretrain.evaluation import knn_accuracy, knn_class_scores

# Query (1, 0). Bank (unnormalised on purpose): one class-0 vector at cosine 1, two class-1 vectors at cosine 0.8,
# and a class-0 vector at cosine -1 that is never among the 3 nearest.
BANK = torch.tensor([[3.0, 0.0], [0.4, 0.3], [0.8, -0.6], [-2.0, 0.0]])
BANK_LABELS = torch.tensor([0, 1, 1, 0])
QUERY = torch.tensor([[2.0, 0.0]])


@pytest.mark.parametrize(
    ("k", "temperature", "expected_scores", "prediction"),
    [
        # k=1: only the nearest (class 0) votes.
        (1, 0.07, [math.exp(1 / 0.07), 0.0], 0),
        # k=3, T=0.07: exp(14.29) beats 2 exp(11.43): sharp weights favour the single closest neighbour.
        (3, 0.07, [math.exp(1 / 0.07), 2 * math.exp(0.8 / 0.07)], 0),
        # k=3, T=0.5: e^2 = 7.39 < 2 e^1.6 = 9.91: softer weights let the two class-1 neighbours win.
        (3, 0.5, [math.exp(2.0), 2 * math.exp(1.6)], 1),
        # k=1 at the same T=0.5 predicts class 0 again: k alone changes the answer.
        (1, 0.5, [math.exp(2.0), 0.0], 0),
    ],
)
def test_scores_and_prediction_hand_computed(k, temperature, expected_scores, prediction):
    scores = knn_class_scores(BANK, BANK_LABELS, QUERY, num_classes=2, k=k, temperature=temperature)
    torch.testing.assert_close(scores, torch.tensor([expected_scores]), rtol=1e-5, atol=0.0)
    accuracy = knn_accuracy(BANK, BANK_LABELS, QUERY, torch.tensor([prediction]), k=k, temperature=temperature)
    assert accuracy == {"top1": 1.0}


def test_top1_and_top5_over_several_queries():
    # Three queries of class 2, 0, 1 against a bank with one vector per class on the axes of R^3.
    bank = torch.eye(3)
    labels = torch.tensor([0, 1, 2])
    queries = torch.tensor([[0.1, 0.0, 1.0], [1.0, 0.2, 0.0], [1.0, 0.9, 0.0]])
    # k=3, T=0.07 -> per query the class of the most similar bank vector wins: 2, 0, 0 (the third is wrong).
    result = knn_accuracy(bank, labels, queries, torch.tensor([2, 0, 1]), k=3, temperature=0.07, topk=(1, 2))
    assert result["top1"] == pytest.approx(2 / 3)
    assert result["top2"] == pytest.approx(1.0)


def test_chunking_and_k_larger_than_the_bank_give_the_same_scores():
    generator = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(30, 5, generator=generator), torch.randn(7, 5, generator=generator)
    labels = torch.randint(0, 4, (30,), generator=generator)
    whole = knn_class_scores(bank, labels, queries, num_classes=4, k=50, temperature=0.2)
    chunked = knn_class_scores(bank, labels, queries, num_classes=4, k=30, temperature=0.2, chunk_size=3)
    torch.testing.assert_close(whole, chunked)
    # With k covering the bank, each row sums every bank vector's weight.
    expected_total = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(bank, dim=1).T
    torch.testing.assert_close(whole.sum(dim=1), (expected_total / 0.2).exp().sum(dim=1))


def test_ties_go_to_the_lower_class():
    bank = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    result = knn_accuracy(bank, torch.tensor([1, 0]), torch.tensor([[1.0, 0.0]]), torch.tensor([0]), k=2)
    assert result["top1"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k must be at least 1"),
        ({"temperature": 0.0}, "temperature must be positive"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        knn_class_scores(BANK, BANK_LABELS, QUERY, **kwargs)


def test_shape_mismatches_are_clear_errors():
    with pytest.raises(ValueError, match="query features must be"):
        knn_class_scores(BANK, BANK_LABELS, torch.ones(1, 3))
    with pytest.raises(ValueError, match="bank labels must be"):
        knn_class_scores(BANK, BANK_LABELS[:3], QUERY)
