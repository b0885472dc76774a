"""A small TCP proxy for fault tests: forward, stall without closing, cut, or switch upstream.

It runs its own asyncio loop on a background thread, so sync and async tests drive it alike.
``stall()`` stops forwarding bytes in both directions but keeps every socket open (a network
that silently stops delivering: only a timeout can tell); ``resume()`` delivers what was held
and carries on. ``cut()`` closes every open connection at once (a network reset or a failover);
``retarget()`` sends new connections to another upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.port = 0
        self.accepted = 0  # connections accepted so far
        self.forwarded = 0  # bytes forwarded so far, both directions
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- control (any thread) ------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._call(self._start())
        return self

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def stall(self) -> None:
        """Stop forwarding, closing nothing: bytes already read are held until resume()."""
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        self._call(self._set_flowing(True))

    def cut(self) -> None:
        """Close every open connection (both sides)."""
        self._call(self._cut())

    def retarget(self, upstream_port: int) -> None:
        """New connections go to ``upstream_port`` from now on."""
        self.upstream_port = upstream_port

    @property
    def open_connections(self) -> int:
        return len(self._writers) // 2

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop's side -----------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _cut(self) -> None:
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        assert self._flowing is not None
        try:
            # A stalled network does not even complete the upstream handshake.
            await self._flowing.wait()
            up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
        except (OSError, asyncio.CancelledError):
            self._writers.discard(writer)
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        tasks = [
            asyncio.create_task(self._pump(reader, up_writer, writer)),
            asyncio.create_task(self._pump(up_reader, writer, up_writer)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._tasks.difference_update(tasks)

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, src_writer: asyncio.StreamWriter
    ) -> None:
        assert self._flowing is not None
        try:
            while True:
                data = await src.read(CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()
                self.forwarded += len(data)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            # One side ended: end both, as the kernel would for a proxied connection.
            for w in (dst, src_writer):
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.transport.abort()
