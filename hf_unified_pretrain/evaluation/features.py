"""Frozen features of any of our models (or any transformers vision model): pooled output and pooled intermediates.

Models are reached only through their outputs (`ModelOutput` fields), never through one method's internals:

- `"pooled"`: the mean patch token of `last_hidden_state`. It only uses weights every checkpoint of a model has, so
  a pre-training, classification or bare checkpoint of the same encoder gives the same features (a pooler built
  fresh when a pre-training checkpoint is loaded into `AutoModel` would not be trained);
- with `intermediate=True`, also `"pooler_output"` (the model's own pooled output, when it builds a pooler) and
  every tuple-valued output field except attentions, one entry per element, pooled the same way:
  `"hidden_states.<i>"` (per layer), and for pyramid models e.g. `"stage_features.<i>"` / `"pyramid_features.<i>"`
  (per stage / level).

Pooling by rank: (B, C) as is; (B, L, C) tokens averaged over the patch tokens only; (B, C, H, W) maps averaged
over H, W; (B, L, s, s, C) patch-layout maps averaged over L, s, s. When the config's `patch_size` gives an `h x w`
grid, a sequence holds `L - h*w` other tokens: the config's `num_global_tokens` of them come AFTER the patch tokens
(MultiMAE appends its global tokens last, as its original does), the rest BEFORE them ([CLS], registers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

POOLED = "pooled"
# Output fields that are not features (or hold per-head maps rather than per-token vectors).
_SKIPPED_FIELDS = {"attentions", "cross_attentions", "reconstructed_pixel_values"}


def load_feature_model(name_or_path: str | Path, **kwargs) -> nn.Module:
    """The bare encoder of a checkpoint folder through `AutoModel` (pre-training heads and teachers are left out).

    Args:
        name_or_path: A `save_pretrained` folder (pre-training, classification or bare-model checkpoint).
        kwargs: Passed to `AutoModel.from_pretrained` (e.g. `local_files_only=True`).
    """
    from transformers import AutoModel  # our model types are registered when this package is imported

    return AutoModel.from_pretrained(name_or_path, **kwargs)


def feature_encoder(model: nn.Module) -> nn.Module:
    """The module whose outputs are features: a head model's `base_model` (e.g. `ITPNForPreTraining.itpn`)."""
    base = getattr(model, "base_model", None)
    return base if isinstance(base, nn.Module) else model


def pool_tokens(tensor: torch.Tensor, num_prefix_tokens: int = 0, num_suffix_tokens: int = 0) -> torch.Tensor:
    """One vector per image from a feature tensor (see the module docstring for the layouts).

    Args:
        tensor: (B, C), (B, L, C), (B, C, H, W) or (B, L, s, s, C).
        num_prefix_tokens: Leading tokens of a (B, L, C) sequence left out of the mean ([CLS], registers).
        num_suffix_tokens: Trailing tokens of a (B, L, C) sequence left out of the mean (MultiMAE's global tokens).

    Returns:
        (B, C).
    """
    if tensor.ndim == 2:
        return tensor
    if tensor.ndim == 3:
        if num_prefix_tokens < 0 or num_suffix_tokens < 0 or num_prefix_tokens + num_suffix_tokens >= tensor.shape[1]:
            raise ValueError(
                f"Cannot leave out {num_prefix_tokens} leading and {num_suffix_tokens} trailing tokens of a sequence "
                f"of {tensor.shape[1]} tokens: at least one patch token must remain."
            )
        return tensor[:, num_prefix_tokens : tensor.shape[1] - num_suffix_tokens].mean(dim=1)
    if tensor.ndim == 4:
        return tensor.mean(dim=(2, 3))
    if tensor.ndim == 5:
        return tensor.mean(dim=(1, 2, 3))
    raise ValueError(
        f"Cannot pool a feature tensor of shape {tuple(tensor.shape)}: expected (B, C), (B, L, C), (B, C, H, W) "
        "or (B, L, s, s, C)."
    )


def num_patch_tokens(config, image_height: int, image_width: int) -> int | None:
    """Patch tokens of an image for configs with an int `patch_size` (None otherwise)."""
    patch_size = getattr(config, "patch_size", None)
    if isinstance(patch_size, (tuple, list)) and len(patch_size) == 2:
        return (image_height // patch_size[0]) * (image_width // patch_size[1])
    if isinstance(patch_size, int) and patch_size > 0:
        return (image_height // patch_size) * (image_width // patch_size)
    return None


def suffix_token_count(config) -> int:
    """Tokens a config's sequences carry after their patch tokens: its `num_global_tokens` (0 without the field)."""
    count = getattr(config, "num_global_tokens", 0)
    return count if isinstance(count, int) and count > 0 else 0


def pooled_outputs(
    outputs: Mapping[str, object],
    intermediate: bool = False,
    num_patches: int | None = None,
    num_suffix_tokens: int = 0,
) -> dict[str, torch.Tensor]:
    """Pooled features of one forward pass.

    Args:
        outputs: A model's `ModelOutput` (or dict) with `last_hidden_state` (and maybe `pooler_output`).
        intermediate: Also pool every element of tuple-valued fields (`hidden_states`, `stage_features`, ...).
        num_patches: Patch tokens per image; longer (B, L, C) sequences hold `L - num_patches` other tokens.
        num_suffix_tokens: How many of those other tokens come after the patch tokens (the rest come first).

    Returns:
        `{"pooled": (B, C), "pooler_output": (B, C), "<field>.<i>": (B, C_i), ...}`.
    """

    def pool(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.ndim != 3 or num_patches is None:
            return pool_tokens(tensor)
        extra = max(tensor.shape[1] - num_patches, 0)
        suffix = min(num_suffix_tokens, extra)
        return pool_tokens(tensor, extra - suffix, suffix)

    if outputs.get("last_hidden_state") is None:
        raise ValueError(
            f"The model output has no `last_hidden_state` (fields: {sorted(outputs)}): pass the bare encoder "
            "(AutoModel) or a head model whose `base_model` is one."
        )
    features = {POOLED: pool(outputs["last_hidden_state"])}
    if intermediate:
        if outputs.get("pooler_output") is not None:
            features["pooler_output"] = pool_tokens(outputs["pooler_output"])
        for name, value in outputs.items():
            if name in _SKIPPED_FIELDS or not isinstance(value, (tuple, list)):
                continue
            for index, tensor in enumerate(value):
                if isinstance(tensor, torch.Tensor):
                    features[f"{name}.{index}"] = pool(tensor)
    return features


def _pixel_batches(images: torch.Tensor | Iterable, batch_size: int) -> Iterator[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"Expected pixel_values of shape (N, C, H, W), got {tuple(images.shape)}.")
        yield from images.split(batch_size)
        return
    for batch in images:
        if isinstance(batch, Mapping):
            batch = batch["pixel_values"]
        elif isinstance(batch, (tuple, list)):
            batch = batch[0]
        yield batch


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: torch.Tensor | Iterable,
    *,
    batch_size: int = 64,
    intermediate: bool = False,
    progress: bool = False,
    description: str = "features",
) -> dict[str, torch.Tensor]:
    """Pooled features of a set of images, batched, without gradients, on the model's device.

    The model is put in eval mode for the pass and restored to its previous mode afterwards; no random numbers are
    drawn (no mask is passed, dropout and drop-path are off in eval mode).

    Args:
        model: Any of our models (a head model is reduced to its `base_model`) or a transformers vision encoder.
        images: Normalised `pixel_values` (N, C, H, W), or an iterable of batches (tensors, `(pixels, ...)` tuples
            or dicts with `pixel_values`, e.g. a `DataLoader`).
        batch_size: Images per forward pass when `images` is a tensor.
        intermediate: Also return pooled per-layer / per-stage features (see the module docstring).
        progress: Show a tqdm progress bar.
        description: Label of the progress bar.

    Returns:
        `{"pooled": (N, C), ...}` float32 tensors on the CPU, rows in input order.
    """
    encoder = feature_encoder(model)
    parameter = next(encoder.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    batches = _pixel_batches(images, batch_size)
    if progress:
        from tqdm.auto import tqdm

        total = -(-len(images) // batch_size) if isinstance(images, torch.Tensor) else None
        batches = tqdm(batches, total=total, desc=description, unit="batch")
    was_training = encoder.training
    encoder.eval()
    collected: dict[str, list[torch.Tensor]] = {}
    try:
        for pixels in batches:
            kwargs = {"output_hidden_states": True} if intermediate else {}
            outputs = encoder(pixel_values=pixels.to(device=device, dtype=dtype), **kwargs)
            config = getattr(encoder, "config", None)
            num_patches = num_patch_tokens(config, *pixels.shape[-2:])
            suffix = suffix_token_count(config)
            for name, value in pooled_outputs(outputs, intermediate, num_patches, suffix).items():
                collected.setdefault(name, []).append(value.float().cpu())
    finally:
        encoder.train(was_training)
    if not collected:
        raise ValueError("No images to extract features from.")
    return {name: torch.cat(values) for name, values in collected.items()}
