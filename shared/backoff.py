"""Exponential backoff with jitter, so that processes which failed together do not retry
together, and nothing hammers WeChat or Redis."""

from __future__ import annotations

import random


def backoff_delay(failures: int, *, base: float, cap: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures (>= 1): "equal jitter".

    Half of the capped exponential step is fixed, half random, so retries from many
    processes spread out but a single one never retries immediately.
    """
    step = min(cap, base * 2.0 ** max(0, min(failures - 1, 30)))
    return step / 2 + random.uniform(0, step / 2)


class Backoff:
    """The same, counting the failures itself: ``next_delay()`` after each, ``reset()``."""

    def __init__(self, *, base: float = 0.1, cap: float = 5.0) -> None:
        self._base = base
        self._cap = cap
        self.attempts = 0

    def next_delay(self) -> float:
        self.attempts += 1
        return backoff_delay(self.attempts, base=self._base, cap=self._cap)

    def reset(self) -> None:
        self.attempts = 0
