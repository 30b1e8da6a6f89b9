"""Strict keyword arguments for model forwards: a misspelt argument is an error, not silently ignored."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from transformers.utils import TransformersKwargs

# What transformers itself may pass to any forward: `TransformersKwargs` (output capture, `num_items_in_batch` from the
# Trainer, attention-backend arguments) and `return_dict` (consumed by `can_return_tuple` / `capture_outputs`).
TRANSFORMERS_FORWARD_KWARGS: frozenset[str] = frozenset(
    TransformersKwargs.__required_keys__ | TransformersKwargs.__optional_keys__ | {"return_dict"}
)


def strict_forward_kwargs(forward: Callable[..., Any]) -> Callable[..., Any]:
    """Decorates a `forward(self, ..., **kwargs)` so that unknown keyword arguments raise a `TypeError`.

    A forward taking `**kwargs: Unpack[TransformersKwargs]` would otherwise swallow any misspelt argument (e.g.
    `bool_mask_pos=` silently training with a random mask). Accepted: the forward's own named parameters and
    `TRANSFORMERS_FORWARD_KWARGS`. Put it above the other forward decorators so that it sees the caller's arguments.

    Args:
        forward: The forward function (possibly already wrapped with `functools.wraps`).

    Returns:
        The wrapped forward, with the same signature.
    """
    parameters = inspect.signature(forward).parameters
    named = [
        name
        for name, parameter in parameters.items()
        if name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    ]
    accepted = frozenset(named) | TRANSFORMERS_FORWARD_KWARGS

    @functools.wraps(forward)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        unknown = [name for name in kwargs if name not in accepted]
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.forward() got unexpected keyword argument(s) {unknown}. It accepts {named} "
                f"and transformers' {sorted(TRANSFORMERS_FORWARD_KWARGS)}."
            )
        return forward(self, *args, **kwargs)

    return wrapper
