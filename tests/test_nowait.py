"""``start_send``: a write that completes at once, and one that must be finished later."""

from __future__ import annotations

import asyncio

import pytest

from services.gateway.nowait import Message, start_send


class FakeSocket:
    """An ASGI ``send`` over a socket that can be paused, like uvicorn's flow control."""

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()
        self.written: list[bytes] = []
        self.abandoned = 0

    async def send(self, message: Message) -> None:
        try:
            await self.writable.wait()
        except asyncio.CancelledError:
            self.abandoned += 1
            raise
        self.written.append(message["body"])


def body(data: bytes) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": True}


async def test_a_write_to_a_writable_socket_completes_without_a_task() -> None:
    sock = FakeSocket()
    assert start_send(sock.send, body(b"a")) is None
    assert sock.written == [b"a"]


async def paused_write(sock: FakeSocket) -> asyncio.Task[None]:
    """A write started on a paused socket, handed to a task that awaits its end."""
    sock.writable.clear()
    pending = start_send(sock.send, body(b"a"))
    assert pending is not None
    assert sock.written == []

    async def finish() -> None:
        await pending

    task = asyncio.create_task(finish())
    await asyncio.sleep(0)
    assert not task.done()
    return task


async def test_a_write_to_a_paused_socket_is_finished_by_whoever_awaits_it() -> None:
    sock = FakeSocket()
    task = await paused_write(sock)
    sock.writable.set()
    await asyncio.wait_for(task, 1)
    assert sock.written == [b"a"]


async def test_cancelling_the_finisher_abandons_the_write_inside_send() -> None:
    sock = FakeSocket()
    task = await paused_write(sock)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sock.abandoned == 1
    sock.writable.set()
    await asyncio.sleep(0)
    assert sock.written == []


async def test_an_error_raised_at_once_reaches_the_caller() -> None:
    async def refuse(message: Message) -> None:
        raise RuntimeError("response already complete")

    with pytest.raises(RuntimeError):
        start_send(refuse, body(b"a"))
