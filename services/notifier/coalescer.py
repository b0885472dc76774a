"""When the next ``notification`` is due: a short window after the first unpublished change.

A burst of messages becomes one notification carrying the latest count; a quiet stream
publishes nothing. The window starts at the first change and is not extended by later ones,
so a steady flow still publishes at least once per window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class Coalescer:
    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._due: float | None = None
        # Producer timestamps (ms) of the messages counted since the last publish: each
        # one's publish lag is measured when the notification carrying it is appended.
        self._waiting: list[int] = []

    @property
    def pending(self) -> bool:
        return self._due is not None

    def changed(self, producer_ts_ms: Iterable[int] = ()) -> None:
        if self._due is None:
            self._due = self._clock() + self._window
        self._waiting.extend(producer_ts_ms)

    def seconds_left(self) -> float | None:
        """None when nothing is waiting; 0 when the publish is due now."""
        if self._due is None:
            return None
        return max(0.0, self._due - self._clock())

    def due(self) -> bool:
        return self._due is not None and self._clock() >= self._due

    def published(self) -> list[int]:
        """Forget the window; the producer timestamps that were waiting for it."""
        waiting, self._waiting, self._due = self._waiting, [], None
        return waiting
