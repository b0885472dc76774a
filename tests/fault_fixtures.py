"""Shared pieces of the fault tests: a private Redis with AOF per test, services started
against any Redis URL (direct or through tests/tcp_proxy.py), and producers whose entry ids
the test chooses, so order checks are one integer compare."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aredis
from gateway_fixtures import GatewayProc
from procs import ServiceProc, wait_for
from sse import Event, Parser

from shared.events import Notification
from shared.keys import Keys
from shared.local_redis import LocalRedis, free_port
from shared.streams import encode_event


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A redis-server of this test's own (AOF, appendfsync everysec): it may be restarted."""
    server = LocalRedis(tmp_path / "redis-aof", appendonly=True)
    server.start()
    yield server
    server.stop()


@dataclass
class Services:
    """Gateways and notifiers of one test, each pointed at the URL it is given."""

    account: str
    tmp_path: Path
    procs: list[ServiceProc] = field(default_factory=list)

    def gateway(self, url: str, *, wait: str = "readyz", **env: str) -> GatewayProc:
        """A gateway on ``url``, started and answering ``wait`` (``healthz`` if Redis is
        not up yet); ``env`` holds settings without their ``WX_`` prefix."""
        full = {"WX_REDIS_URL": url, "WX_ACCOUNT": self.account}
        full.update({f"WX_{k.upper()}": v for k, v in env.items()})
        proc = GatewayProc(full, self.tmp_path / f"gateway-{len(self.procs)}.log")
        self.procs.append(proc)
        proc.start()
        proc.wait_http(f"{proc.url}/{wait}")
        return proc

    def notifier(self, url: str, *, wait: str = "readyz", **env: str) -> Notifier:
        port = free_port()
        full = {
            "WX_REDIS_URL": url,
            "WX_ACCOUNT": self.account,
            "WX_OPS_PORT": str(port),
            "WX_LOG_LEVEL": "DEBUG",
            "WX_NOTIFIER_READ_BLOCK_SECONDS": "0.5",
            "WX_NOTIFIER_BACKOFF_MAX_SECONDS": "0.5",
            "WX_NOTIFIER_CLAIM_INTERVAL_SECONDS": "0.2",
        }
        full.update({f"WX_{k.upper()}": v for k, v in env.items()})
        proc = Notifier(full, self.tmp_path / f"notifier-{len(self.procs)}.log", port)
        self.procs.append(proc)
        proc.start()
        proc.wait_http(f"{proc.ops_url}/{wait}")
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()


class Notifier(ServiceProc):
    def __init__(self, env: dict[str, str], log_path: Path, ops_port: int) -> None:
        super().__init__("services.notifier", env, log_path)
        self.ops_port = ops_port

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"


@pytest.fixture
def services(account: str, tmp_path: Path) -> Iterator[Services]:
    started = Services(account, tmp_path)
    yield started
    started.stop_all()


def ready_status(url: str) -> int:
    """The /readyz status of an ops URL, or 0 if nothing answers."""
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code
    except httpx.HTTPError:
        return 0


def wait_status(url: str, status: int, *, timeout: float = 15, what: str = "") -> None:
    wait_for(lambda: ready_status(url) == status, timeout=timeout, what=what or f"{url} {status}")


class Producer:
    """Appends ``notification`` events whose ids it chooses: ``<base>-1``, ``<base>-2``, ...

    Explicit ids keep the n of every event in its id, so a client can check the order with
    one compare, and a second run after a Redis restart can go on where the first stopped.
    """

    def __init__(self, client: aredis.Redis, keys: Keys, base_ms: int | None = None) -> None:
        self.client = client
        self.keys = keys
        self.base = base_ms if base_ms is not None else int(time.time() * 1000)
        self.n = 0
        self.acked: list[str] = []  # ids whose XADD Redis confirmed

    def id_of(self, n: int) -> str:
        return f"{self.base}-{n}"

    async def add(self, count: int = 1) -> None:
        pipe = self.client.pipeline(transaction=False)
        for i in range(self.n + 1, self.n + count + 1):
            pipe.xadd(
                self.keys.events,
                encode_event(Notification(count=i)),  # type: ignore[arg-type]
                id=self.id_of(i),
            )
        ids = await pipe.execute()
        self.n += count
        self.acked.extend(str(x) for x in ids)

    async def run(self, total: int, per_second: float, *, batch: int = 1) -> None:
        """``total`` events at ``per_second``, ``batch`` per write, paced by the clock."""
        loop = asyncio.get_running_loop()
        start, first = loop.time(), self.n
        while self.n < total:
            await self.add(min(batch, total - self.n))
            due = start + (self.n - first) / per_second
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)


def stream_ids(client: redis.Redis, key: str) -> list[str]:
    return [str(entry_id) for entry_id, _ in client.xrange(key) or []]


class Recorder:
    """One browser-like SSE client: records every event (``reset`` too), and reconnects with
    ``Last-Event-ID`` whenever its stream ends or is refused, until ``stop()``."""

    def __init__(self, url: str, token: str, last_event_id: str | None = None) -> None:
        self.url = url
        self.token = token
        self.last_id = last_event_id
        self.events: list[Event] = []
        self.connects = 0
        self.refusals: list[int] = []
        self.errors: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Recorder:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.events if e.id is not None]

    @property
    def resets(self) -> list[Event]:
        return [e for e in self.events if e.event == "reset"]

    async def wait_for(self, pred: Callable[[Recorder], bool], seconds: float = 20) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not pred(self):
            if loop.time() > deadline:
                seen = [(e.event, e.id) for e in self.events[-10:]]
                raise AssertionError(f"stream never got there; last events: {seen}")
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=2.0)) as http:
            while not self._stop.is_set():
                headers = {"Authorization": f"Bearer {self.token}"}
                if self.last_id is not None:
                    headers["Last-Event-ID"] = self.last_id
                try:
                    async with http.stream("GET", self.url, headers=headers) as resp:
                        if resp.status_code != 200:
                            self.refusals.append(resp.status_code)
                        else:
                            self.connects += 1
                            parser = Parser()
                            async for text in resp.aiter_text():
                                for event in parser.feed(text):
                                    self.events.append(event)
                                    if event.id is not None:
                                        self.last_id = event.id
                except httpx.HTTPError as exc:
                    self.errors.append(type(exc).__name__)
                await asyncio.sleep(0.1)
