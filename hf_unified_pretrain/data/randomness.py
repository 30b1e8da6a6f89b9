"""Seeded randomness that stays correct inside DataLoader worker processes.

A seeded `torch.Generator` stored on a transform or collator is copied into every DataLoader worker, so all workers
would draw the same crops and masks (and non-persistent workers would repeat them every epoch). `SeededRandomness`
therefore uses its own generator only in the main process; inside a worker it returns None, which makes torch use the
worker's global RNG, already seeded by the DataLoader with a distinct, reproducible seed per worker and per epoch.
"""

from __future__ import annotations

import torch
from torch.utils.data import get_worker_info


class SeededRandomness:
    """Holds an optional seeded `torch.Generator` and hands it out only where it is safe to use.

    Args:
        seed: Seed of the main-process generator; None uses torch's global RNG everywhere.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def generator(self) -> torch.Generator | None:
        """The generator to pass to torch sampling functions (None = global RNG)."""
        if self._generator is None or get_worker_info() is not None:
            return None
        return self._generator

    def uniform(self, low: float, high: float) -> float:
        """A float drawn uniformly from [low, high)."""
        return low + (high - low) * float(torch.rand((), generator=self.generator()))

    def randint(self, low: int, high: int) -> int:
        """An int drawn uniformly from [low, high] (both inclusive)."""
        return int(torch.randint(low, high + 1, (), generator=self.generator()))

    def bernoulli(self, probability: float) -> bool:
        """True with the given probability."""
        return float(torch.rand((), generator=self.generator())) < probability

    def __getstate__(self) -> dict:
        # A pickled torch.Generator carries its state as a tensor, which DataLoader's spawn-context pickler moves to
        # shared memory and fails to rebuild; plain bytes travel everywhere.
        state = self.__dict__.copy()
        if self._generator is not None:
            state["_generator"] = bytes(self._generator.get_state().numpy())
        return state

    def __setstate__(self, state: dict) -> None:
        generator_state = state.pop("_generator")
        self.__dict__.update(state)
        self._generator = None
        if generator_state is not None:
            self._generator = torch.Generator()
            self._generator.set_state(torch.frombuffer(bytearray(generator_state), dtype=torch.uint8))

    def __repr__(self) -> str:
        return f"SeededRandomness(seed={self.seed})"
