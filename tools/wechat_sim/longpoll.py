"""Wake-ups for long-polled requests: hold until the state changes or a deadline passes.

Every mutation of the simulator's state calls :meth:`Changes.notify`; every held request
re-evaluates its own question after a wake-up. Nothing here sleeps on a timer, so an answer
goes out the moment it exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Changes:
    """A broadcast "something changed" signal for coroutines on one event loop."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        # Swap in a fresh event so that waiters which re-arm after this wake-up wait for the
        # *next* change rather than spinning on an already-set event.
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, within: float) -> bool:
        """True when notified within ``within`` seconds."""
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), within)
        except TimeoutError:
            return False
        return True

    async def until(self, answer: Callable[[], T | None], within: float) -> T | None:
        """The first non-None ``answer()``, re-asked after every change; None at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            result = answer()
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            await self.wait(remaining)
