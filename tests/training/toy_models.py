"""A tiny pre-training model returning `loss` + `losses` with the layer-decay interface, for Trainer tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput


class ToyPretrainingConfig(PreTrainedConfig):
    model_type = "toy_pretraining_for_trainer_tests"
    hidden_size: int = 4
    num_hidden_layers: int = 2
    aux_weight: float = 0.1


@dataclass
class ToyPretrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    logits: torch.Tensor | None = None


class ToyPretrainingModel(PreTrainedModel):
    """Embeddings (id 0) → blocks (ids 1..L) → norm + head (id L+1); reconstructs its flattened input."""

    config_class = ToyPretrainingConfig
    main_input_name = "pixel_values"

    def __init__(self, config: ToyPretrainingConfig):
        super().__init__(config)
        self.embed = nn.Linear(12, config.hidden_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.layers = nn.ModuleList(
            nn.Linear(config.hidden_size, config.hidden_size) for _ in range(config.num_hidden_layers)
        )
        self.norm = nn.LayerNorm(config.hidden_size)
        self.head = nn.Linear(config.hidden_size, 12)
        self.post_init()

    @property
    def num_lr_decay_layers(self) -> int:
        return self.config.num_hidden_layers + 2

    def get_layer_id_for_lr_decay(self, param_name: str) -> int:
        if param_name.startswith(("embed.", "cls_token")):
            return 0
        if param_name.startswith("layers."):
            return int(param_name.split(".")[1]) + 1
        return self.num_lr_decay_layers - 1

    def no_weight_decay(self) -> set[str]:
        return {"cls_token"}

    def forward(self, pixel_values: torch.Tensor, **kwargs) -> ToyPretrainingOutput:
        flat = pixel_values.flatten(1)
        hidden = self.embed(flat) + self.cls_token[:, 0]
        for layer in self.layers:
            hidden = hidden + torch.tanh(layer(hidden))
        reconstruction = self.head(self.norm(hidden))
        losses = {"pixel": ((reconstruction - flat) ** 2).mean(), "aux": (hidden**2).mean()}
        loss = losses["pixel"] + self.config.aux_weight * losses["aux"]
        return ToyPretrainingOutput(loss=loss, losses=losses, logits=reconstruction)


def toy_dataset(size: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [{"pixel_values": torch.randn(3, 2, 2, generator=generator)} for _ in range(size)]
