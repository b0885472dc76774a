"""Exponential backoff with jitter, so replicas that lost Redis together do not return together."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, *, base: float = 0.1, cap: float = 5.0) -> None:
        self._base = base
        self._cap = cap
        self.attempts = 0

    def next_delay(self) -> float:
        """Half to all of ``base * 2**attempts``, capped."""
        delay = min(self._cap, self._base * 2**self.attempts)
        self.attempts += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempts = 0
