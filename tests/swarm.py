"""A swarm of SSE clients on raw asyncio streams: a thousand cost a few sockets, not threads.

Each client speaks HTTP/1.1 over ``asyncio.open_connection``, de-chunks the response, cuts
complete frames at the last blank line and pulls the ids (and ``reset`` events) out with
one compiled regex, so it costs little per event. Producers in these tests choose every
entry id as ``<base ms>-<n>`` (n = 1, 2, ...), so one integer per client checks the order:
anything but ``n == expected`` is a lost or a duplicated event (a reordering shows as both).

A client whose stream ends (the gateway was killed, drained or cut it off) reconnects with
``Last-Event-ID`` to wherever ``target()`` says, as a browser's EventSource would, until it
has seen the last event.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

FRAME_FIELDS: Final = re.compile(rb"^(?:id: (\d+)-(\d+)|event: (reset))\r?$", re.MULTILINE)


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit towards ``wanted`` (up to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def frames_end(buf: bytearray) -> int:
    """Where the last complete SSE frame ends (0 if none): just after a blank line."""
    at = buf.rfind(b"\n\n")
    return at + 2 if at >= 0 else 0


class Dechunker:
    """HTTP/1.1 chunked transfer decoding, incremental."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.need = 0  # payload bytes of the current chunk still to come
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = bytearray()
        while self.buf and not self.ended:
            if self.need:
                take = min(self.need, len(self.buf))
                out += self.buf[:take]
                del self.buf[:take]
                self.need -= take
                continue
            line_end = self.buf.find(b"\r\n")
            if line_end < 0:
                break
            line = bytes(self.buf[:line_end]).split(b";")[0].strip()
            if not line:  # the CRLF after a chunk's payload
                del self.buf[: line_end + 2]
                continue
            size = int(line, 16)
            del self.buf[: line_end + 2]
            if size == 0:
                self.ended = True
            self.need = size
        return bytes(out)


@dataclass
class SwarmClient:
    idx: int
    last_id: str
    expected: int  # the n of the next event it must see
    received: int = 0
    lost: int = 0  # events skipped over
    duplicated: int = 0  # events seen again, or older than one already seen (reordered)
    resets: int = 0
    connects: int = 0
    refused: dict[int, int] = field(default_factory=dict)  # HTTP status -> times
    errors: int = 0  # connection refused or reset while (re)connecting
    done: bool = False
    ended_at: float = 0.0

    def see(self, n: int, entry_id: str) -> None:
        self.received += 1
        if n == self.expected:
            self.expected = n + 1
        elif n > self.expected:
            self.lost += n - self.expected
            self.expected = n + 1
        else:
            self.duplicated += 1
        self.last_id = entry_id


Target = Callable[[SwarmClient], tuple[str, int]]


@dataclass
class Swarm:
    """``size`` clients that stream until each has seen event ``n == last`` (once known)."""

    size: int
    token: str
    target: Target
    first_id: str  # every client starts after this id (Last-Event-ID)
    first_n: int  # the n of the first event after ``first_id``
    retry_seconds: tuple[float, float] = (0.1, 0.4)
    clients: list[SwarmClient] = field(default_factory=list)
    last: int | None = None  # set by the test once the producer has finished
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _finished: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self.clients = [SwarmClient(i, self.first_id, self.first_n) for i in range(self.size)]
        self._tasks = [asyncio.create_task(self._run(c)) for c in self.clients]

    def finish_at(self, last: int) -> None:
        self.last = last
        for client in self.clients:
            if client.expected > last:
                client.done = True
        self._check_done()

    def _check_done(self) -> None:
        if self.last is not None and all(c.done for c in self.clients):
            self._finished.set()

    async def wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._finished.wait(), seconds)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def connected(self) -> int:
        return sum(1 for c in self.clients if c.connects > 0)

    async def _run(self, client: SwarmClient) -> None:
        rng = random.Random(client.idx)
        while not client.done:
            host, port = self.target(client)
            try:
                await self._stream(client, host, port)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                client.errors += 1
            if client.done:
                break
            await asyncio.sleep(rng.uniform(*self.retry_seconds))

    async def _stream(self, client: SwarmClient, host: str, port: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(
                f"GET /stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {self.token}\r\n"
                f"Last-Event-ID: {client.last_id}\r\n"
                "Accept: text/event-stream\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                client.refused[status] = client.refused.get(status, 0) + 1
                return
            client.connects += 1
            chunks = Dechunker()
            sse = bytearray()
            while not chunks.ended:
                data = await reader.read(65536)
                if not data:
                    return
                sse += chunks.feed(data)
                end = frames_end(sse)
                if not end:
                    continue
                for ms, n, reset in FRAME_FIELDS.findall(sse, 0, end):
                    if reset:
                        client.resets += 1
                    else:
                        client.see(int(n), f"{ms.decode()}-{n.decode()}")
                del sse[:end]
                if self.last is not None and client.expected > self.last:
                    client.done = True
                    client.ended_at = time.monotonic()
                    self._check_done()
                    return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
