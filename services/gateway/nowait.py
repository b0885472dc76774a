"""Run an ASGI ``send`` up to its first suspension, without a task of its own.

The hub writes one shared chunk to thousands of parked streams per event. Awaiting each
``send`` from a task per stream costs a wake-up and a task step per stream per event (about
40% of the gateway's CPU, bench/ANALYSIS.md). But a body ``send`` to a socket that is not
paused finishes without ever suspending: uvicorn writes to the transport and returns. So the
hub starts the coroutine itself; if it completes, the write is done. Only if it suspends
(the transport is paused: a slow reader) does it become a ``Suspended`` that a task awaits
to finish, and the stream leaves the fast path until it has caught up.

This relies on nothing of uvicorn's: any ASGI server's ``send`` is a coroutine that either
completes or suspends on an awaitable the running event loop understands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]


class Suspended:
    """A ``send`` coroutine that suspended on its first step; ``await`` it to finish.

    Awaiting it does what ``yield from`` does for the coroutine: what the coroutine yielded
    (a future) goes up to the awaiting task, and the task's resumption (a value, or an
    exception such as a cancel) goes back down into the coroutine.
    """

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, None], yielded: object) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, None]:
        coro, value = self._coro, self._yielded
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancel (or anything thrown) goes down
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return

    def close(self) -> None:
        """Abandon the write (the stream is being cut): nothing more of it is sent."""
        self._coro.close()


def start_send(send: Send, message: Message) -> Suspended | None:
    """Begin ``send(message)``: ``None`` if it completed at once, else what finishes it.

    An exception ``send`` raises at once (the server refusing the message) propagates.
    """
    coro = send(message)
    if not isinstance(coro, Coroutine):  # a send that is not a coroutine: await it
        return Suspended(_await(coro), None) if coro is not None else None
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return Suspended(coro, yielded)


async def _await(awaitable: Awaitable[None]) -> None:
    await awaitable
