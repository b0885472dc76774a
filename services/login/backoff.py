"""Exponential backoff with jitter, so that restarts and retries never hammer WeChat."""

from __future__ import annotations

import random


def backoff_delay(failures: int, *, base: float, cap: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures (>= 1): "equal jitter".

    Half of the capped exponential step is fixed, half random, so retries from many
    processes spread out but a single one never retries immediately.
    """
    step = min(cap, base * 2.0 ** max(0, min(failures - 1, 30)))
    return step / 2 + random.uniform(0, step / 2)
