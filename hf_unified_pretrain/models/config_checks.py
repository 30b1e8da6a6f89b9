"""Range checks shared by every model config: an out-of-range field fails when the config is built, naming it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Fields of the shared vocabulary (CONVENTIONS 3) and what they must satisfy; configs check those they have.
SHARED_AT_LEAST_ONE = (
    "image_size",
    "patch_size",
    "num_channels",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
)
SHARED_POSITIVE = ("mlp_ratio", "layer_norm_eps")
SHARED_NON_NEGATIVE = ("initializer_range",)
SHARED_PROBABILITIES = ("drop_path_rate", "hidden_dropout_prob", "attention_probs_dropout_prob")


def _values(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_field_ranges(
    config: Any,
    *,
    at_least_one: Iterable[str] = (),
    non_negative: Iterable[str] = (),
    positive: Iterable[str] = (),
    probabilities: Iterable[str] = (),
) -> None:
    """Raises a ValueError naming the first field outside its range (the shared fields are always checked).

    Args:
        config: Any config object; fields it lacks and fields set to None are skipped. List/tuple fields (e.g.
            `image_size` as (H, W)) are checked element by element.
        at_least_one: Integer fields >= 1 (sizes, layer and head counts).
        non_negative: Fields >= 0.
        positive: Fields > 0 (ratios, epsilons).
        probabilities: Fields in [0, 1) (dropout and drop-path rates).
    """
    rules = (
        ((*SHARED_AT_LEAST_ONE, *at_least_one), lambda v: v >= 1, "must be at least 1"),
        ((*SHARED_NON_NEGATIVE, *non_negative), lambda v: v >= 0, "must be >= 0"),
        ((*SHARED_POSITIVE, *positive), lambda v: v > 0, "must be > 0"),
        ((*SHARED_PROBABILITIES, *probabilities), lambda v: 0 <= v < 1, "must lie in [0, 1)"),
    )
    for names, accepts, requirement in rules:
        for name in names:
            value = getattr(config, name, None)
            if value is None:
                continue
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and accepts(v) for v in _values(value)):
                raise ValueError(f"{type(config).__name__}.{name} {requirement}, got {value!r}.")


# Keyword arguments every transformers config takes besides its dataclass fields (settable properties such as
# `num_labels` and `output_attentions` are accepted as well).
BASE_CONFIG_KWARGS = frozenset({"num_labels", "out_features", "out_indices", "torch_dtype"})


def check_preset_overrides(config_class: type, overrides: dict[str, Any], *, accepted: Iterable[str] = ()) -> None:
    """Raises a ValueError naming override keys that are no field of `config_class` (a misspelt `hiden_size`).

    A config's constructor keeps unknown keyword arguments as attributes, as every transformers config does for
    loading; presets are typed by hand, so their overrides are checked.

    Args:
        config_class: The config dataclass.
        overrides: The keyword arguments given to `from_preset`.
        accepted: Further names the config's `__post_init__` reads (e.g. older spellings of renamed fields).
    """
    import dataclasses
    import difflib

    known = {field.name for field in dataclasses.fields(config_class)} | BASE_CONFIG_KWARGS | set(accepted)
    known |= {
        name
        for name in dir(config_class)
        if isinstance(getattr(config_class, name, None), property) and getattr(config_class, name).fset is not None
    }
    unknown = sorted(key for key in overrides if key not in known)
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(name for name in known if not name.startswith("_")), n=1)
        hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    raise ValueError(
        f"{config_class.__name__}.from_preset got unknown field(s) {', '.join(hints)}; see the fields of "
        f"{config_class.__name__}."
    )
