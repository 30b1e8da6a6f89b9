"""Linear probe: a multinomial logistic regression on frozen, standardised features, trained with a fixed recipe.

Recipe (the same for every model, so accuracies compare): features are standardised with the training set's
per-dimension mean and std; a zero-initialised linear layer is trained with cross-entropy by AdamW (learning rate
`learning_rate`, cosine-decayed to 0 per step, decoupled weight decay `weight_decay`) for `epochs` passes over
shuffled mini-batches. Shuffling uses a `torch.Generator` seeded with `seed`, so a probe is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_EPOCHS = 100


@dataclass
class LinearProbeResult:
    """Outcome of `linear_probe`.

    Attributes:
        accuracy: Top-1 accuracy on the evaluation features, in [0, 1].
        train_accuracy: Top-1 accuracy on the training features.
        classifier: The trained layer, applied to standardised features.
        mean / std: (D,) standardisation of the training features.
    """

    accuracy: float
    train_accuracy: float
    classifier: nn.Linear
    mean: torch.Tensor
    std: torch.Tensor

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) raw features -> (N,) predicted classes."""
        return self.classifier((features.float() - self.mean) / self.std).argmax(dim=1)


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    eval_features: torch.Tensor,
    eval_labels: torch.Tensor,
    *,
    num_classes: int | None = None,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = 256,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> LinearProbeResult:
    """Trains a linear classifier on frozen training features and measures it on evaluation features.

    Args:
        train_features / train_labels: (N, D) / (N,) integer labels.
        eval_features / eval_labels: (M, D) / (M,).
        num_classes: Default: largest label + 1.
        epochs: Passes over the training features.
        batch_size: Mini-batch size.
        learning_rate: Peak AdamW learning rate.
        weight_decay: AdamW (decoupled) weight decay.
        seed: Seeds the mini-batch order.

    Returns:
        A `LinearProbeResult`.
    """
    if train_features.ndim != 2 or eval_features.ndim != 2 or train_features.shape[1] != eval_features.shape[1]:
        raise ValueError(
            f"Features must be (N, D) and (M, D) with the same D, got {tuple(train_features.shape)} and "
            f"{tuple(eval_features.shape)}."
        )
    if train_labels.shape != train_features.shape[:1] or eval_labels.shape != eval_features.shape[:1]:
        raise ValueError("There must be one label per feature row in both the training and the evaluation set.")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}.")
    train_labels, eval_labels = train_labels.long().cpu(), eval_labels.long().cpu()
    if num_classes is None:
        num_classes = int(max(train_labels.max(), eval_labels.max())) + 1
    train_features = train_features.float().cpu()
    mean = train_features.mean(dim=0)
    std = train_features.std(dim=0, unbiased=False).clamp_min(1e-6)
    inputs = (train_features - mean) / std

    classifier = nn.Linear(inputs.shape[1], num_classes)
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(inputs.shape[0] / batch_size)
    total_steps = epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(seed)
    step = 0
    for _ in range(epochs):
        for index in torch.randperm(inputs.shape[0], generator=generator).split(batch_size):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
            loss = F.cross_entropy(classifier(inputs[index]), train_labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1

    result = LinearProbeResult(0.0, 0.0, classifier.requires_grad_(False), mean, std)
    result.train_accuracy = (result.predict(train_features) == train_labels).float().mean().item()
    result.accuracy = (result.predict(eval_features.cpu()) == eval_labels).float().mean().item()
    return result
