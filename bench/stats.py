"""Small statistics: percentiles of a lag histogram, medians of repeated runs."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence


def hist_percentile(hist: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a 1 ms histogram {ms: count}; None when empty."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= rank:
            return float(ms)
    return float(max(hist))


def hist_max(hist: Mapping[int, int]) -> float | None:
    return float(max(hist)) if hist else None


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
