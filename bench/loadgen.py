"""The load generator: a swarm of SSE clients in a few worker processes, driven by the run.

A worker (``python -m bench.loadgen ...``) opens its share of the streams on one uvloop
event loop (no thread per client), then obeys JSON commands on stdin and answers JSON
lines on stdout. ``Swarm`` is the run's side: it starts the workers, sends the same
command to each and merges their answers.

Commands: ``window`` (a new counting window from a seq on), ``expect`` (wait until every
client has seen a seq, or a timeout; then count what is missing), ``disconnect``,
``reconnect`` (every client at once, with its own ``Last-Event-ID``), ``close``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procstat import raise_nofile
from bench.sse_client import SseClient, Tally

REPO = Path(__file__).resolve().parent.parent
CONNECT_ATTEMPTS = 6


def build_request(
    host: str, port: int, path: str, headers: Sequence[str], last_id: str | None
) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Accept: text/event-stream",
        "Cache-Control: no-cache",
        *headers,
    ]
    if last_id is not None:
        lines.append(f"Last-Event-ID: {last_id}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- the worker process ------------------------------------------------------------------


class Worker:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.clients: list[SseClient] = []
        self.tally_ref: list[Tally] = [Tally()]
        self.errors: dict[str, int] = {}
        self.loop = asyncio.get_running_loop()

    def _error(self, exc: BaseException) -> None:
        key = f"{type(exc).__name__}: {str(exc)[:80]}"
        self.errors[key] = self.errors.get(key, 0) + 1

    async def open_one(
        self, first_seq: int, last_id: str | None, sem: asyncio.Semaphore, catch_up_to: int = 0
    ) -> SseClient | None:
        o = self.opts
        request = build_request(o.host, o.port, o.path, o.header, last_id)
        delay = 0.05
        for attempt in range(CONNECT_ATTEMPTS):
            client = SseClient(request, self.tally_ref, first_seq, strict=o.strict)
            client.catch_up_to = catch_up_to
            try:
                async with sem:
                    await self.loop.create_connection(lambda c=client: c, o.host, o.port)  # type: ignore[misc]
                    if not o.no_wait_headers:
                        await asyncio.wait_for(client.headers_done, o.connect_timeout)
                return client
            except (OSError, TimeoutError, ConnectionError) as exc:
                self._error(exc)
                client.close()
                if attempt + 1 < CONNECT_ATTEMPTS:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
        return None

    async def connect(self, n: int, first_seq: int) -> dict[str, Any]:
        sem = asyncio.Semaphore(self.opts.concurrency)
        t0 = time.monotonic()
        wall0 = time.time()
        last_id = self.opts.last_id
        opened = await asyncio.gather(*(self.open_one(first_seq, last_id, sem) for _ in range(n)))
        self.clients = [c for c in opened if c is not None]
        return {
            "event": "ready",
            "connected": len(self.clients),
            "failed": n - len(self.clients),
            "seconds": time.monotonic() - t0,
            "t0": wall0,
            "errors": self.errors,
        }

    def live(self) -> list[SseClient]:
        return [c for c in self.clients if not c.closed.done()]

    def window(self, first: int) -> None:
        self.tally_ref[0] = Tally()
        for c in self.clients:
            c.window_start = first
            c.order.restart(first)

    async def expect(self, last: int, wait_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if all(c.order.top >= last for c in self.clients if not c.closed.done()):
                break
            await asyncio.sleep(0.02)
        tally = self.tally_ref[0]
        incomplete = 0
        for c in self.clients:
            lost = c.order.close(last)
            if lost:
                incomplete += 1
                tally.lost += lost
        result = self._result(tally)
        result.update(event="result", incomplete=incomplete)
        return result

    def _result(self, tally: Tally) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            **tally.to_json(),
            "clients": len(self.clients),
            "live": len(self.live()),
            "cpu": usage.ru_utime + usage.ru_stime,
            "errors": self.errors,
        }

    async def disconnect(self) -> dict[str, Any]:
        for c in self.clients:
            c.close(abort=True)
        await asyncio.gather(*(c.closed for c in self.clients))
        return {"event": "disconnected", "clients": len(self.clients)}

    async def reconnect(self, head: int, wait_s: float) -> dict[str, Any]:
        """Every client at once, each from its own last id; time until each has ``head``."""
        old = self.clients
        self.tally_ref[0] = Tally()
        self.errors = {}
        sem = asyncio.Semaphore(self.opts.storm_concurrency)
        t0 = time.time()
        deadline = time.monotonic() + wait_s

        async def again(prev: SseClient) -> SseClient | None:
            resume = prev.order.top + 1
            client = await self.open_one(resume, prev.last_id, sem, catch_up_to=head)
            if client is not None and client.order.top >= head and not client.caught_up_at:
                client.caught_up_at = time.time()
            return client

        tasks = [asyncio.create_task(again(c)) for c in old]
        done, pending = await asyncio.wait(tasks, timeout=wait_s)
        for t in pending:  # still not connected when the storm's time is up: failed
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.clients = [c for t in done if (c := t.result()) is not None]
        connected_at = time.time() - t0
        # Polled: one check of N flags every 10 ms costs less than N events.
        while time.monotonic() < deadline:
            if all(c.caught_up_at for c in self.clients):
                break
            await asyncio.sleep(0.01)
        times = sorted((c.caught_up_at - t0) if c.caught_up_at else -1.0 for c in self.clients)
        result = self._result(self.tally_ref[0])
        result.update(
            event="reconnected",
            failed=len(old) - len(self.clients),
            connect_seconds=connected_at,
            caught_up=sum(1 for t in times if t >= 0),
            catch_up_times=[round(t, 4) for t in times],
        )
        return result

    async def _orphan_watch(self) -> None:
        """Exit when the run that started this worker is gone (killed mid-way)."""
        parent = os.getppid()
        while True:
            await asyncio.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    async def serve(self) -> None:
        watch = asyncio.create_task(self._orphan_watch())
        watch.add_done_callback(lambda t: None)
        reader = asyncio.StreamReader()
        await self.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        emit(await self.connect(self.opts.clients, self.opts.first_seq))
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = json.loads(line)
            name = cmd["cmd"]
            if name == "window":
                self.window(int(cmd["first"]))
                emit({"event": "window"})
            elif name == "expect":
                emit(await self.expect(int(cmd["last"]), float(cmd["timeout"])))
            elif name == "disconnect":
                emit(await self.disconnect())
            elif name == "reconnect":
                emit(await self.reconnect(int(cmd["head"]), float(cmd["timeout"])))
            elif name == "close":
                break
        for c in self.clients:
            c.close(abort=True)
        emit({"event": "closed"})


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def worker_main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="one load-generator worker (driven by bench.run)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/stream")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--first-seq", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--storm-concurrency", type=int, default=100_000)
    p.add_argument("--connect-timeout", type=float, default=30.0)
    p.add_argument("--strict", action="store_true")
    p.add_argument(
        "--no-wait-headers",
        action="store_true",
        help="a stream is open once its request is sent (WSGI: headers come with the first event)",
    )
    p.add_argument("--last-id", default=None, help="Last-Event-ID of the first connections")
    opts = p.parse_args(argv)
    if opts.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the load generator only targets loopback")
    raise_nofile(2 * opts.clients + 1024)

    async def run() -> None:
        await Worker(opts).serve()

    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvicorn[standard] brings uvloop
        runner = asyncio.Runner()
    with runner:
        runner.run(run())


# -- the run's side ----------------------------------------------------------------------


@dataclass
class Merged:
    """The workers' answers to one command, added up."""

    parts: list[dict[str, Any]] = field(default_factory=list)

    def total(self, key: str) -> int:
        return sum(int(p.get(key, 0)) for p in self.parts)

    def lag_hist(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for p in self.parts:
            for k, v in p.get("lag_hist", {}).items():
                out[int(k)] = out.get(int(k), 0) + int(v)
        return out

    def last_recv(self) -> float:
        vals = [float(p["last_recv"]) for p in self.parts if p.get("last_recv")]
        return max(vals) if vals else 0.0

    def t0(self) -> float:
        vals = [float(p["t0"]) for p in self.parts if p.get("t0")]
        return min(vals) if vals else 0.0

    def seconds(self) -> float:
        return max((float(p.get("seconds", 0.0)) for p in self.parts), default=0.0)

    def catch_up_times(self) -> list[float]:
        out: list[float] = []
        for p in self.parts:
            out.extend(float(t) for t in p.get("catch_up_times", []))
        return sorted(out)

    def errors(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.parts:
            for k, v in p.get("errors", {}).items():
                out[k] = out.get(k, 0) + int(v)
        return out


class Swarm:
    """N clients over ``workers`` processes, all against one server."""

    def __init__(
        self,
        port: int,
        clients: int,
        *,
        headers: Sequence[str] = (),
        first_seq: int = 1,
        workers: int = 2,
        strict: bool = False,
        path: str = "/stream",
        concurrency: int = 256,
        last_id: str | None = None,
        wait_headers: bool = True,
    ) -> None:
        self.last_id = last_id
        self.wait_headers = wait_headers
        self.port = port
        self.clients = clients
        self.headers = list(headers)
        self.first_seq = first_seq
        self.workers = max(1, min(workers, clients))
        self.strict = strict
        self.path = path
        self.concurrency = concurrency
        self.procs: list[asyncio.subprocess.Process] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def start(self, wait_s: float = 180.0) -> Merged:
        share = [self.clients // self.workers] * self.workers
        for i in range(self.clients % self.workers):
            share[i] += 1
        for n in share:
            args = [
                sys.executable, "-m", "bench.loadgen",
                "--port", str(self.port), "--path", self.path,
                "--clients", str(n), "--first-seq", str(self.first_seq),
                "--concurrency", str(self.concurrency),
            ]  # fmt: skip
            for h in self.headers:
                args += ["--header", h]
            if self.strict:
                args.append("--strict")
            if self.last_id is not None:
                args += ["--last-id", self.last_id]
            if not self.wait_headers:
                args.append("--no-wait-headers")
            proc = await asyncio.create_subprocess_exec(
                *args,
                cwd=REPO,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                limit=64 * 1024 * 1024,
            )
            self.procs.append(proc)
        return await self._answers("ready", wait_s)

    async def _answers(self, event: str, wait_s: float) -> Merged:
        async def one(proc: asyncio.subprocess.Process) -> dict[str, Any]:
            assert proc.stdout is not None
            while True:
                line = await proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"load generator {proc.pid} exited (rc={proc.returncode})")
                msg: dict[str, Any] = json.loads(line)
                if msg.get("event") == event:
                    return msg

        parts = await asyncio.wait_for(asyncio.gather(*(one(p) for p in self.procs)), wait_s)
        return Merged(list(parts))

    async def _command(self, cmd: dict[str, Any], event: str, wait_s: float) -> Merged:
        data = (json.dumps(cmd) + "\n").encode()
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(data)
            await proc.stdin.drain()
        return await self._answers(event, wait_s)

    async def window(self, first: int) -> None:
        await self._command({"cmd": "window", "first": first}, "window", 30)

    async def expect(self, last: int, wait_s: float) -> Merged:
        return await self._command(
            {"cmd": "expect", "last": last, "timeout": wait_s}, "result", wait_s + 60
        )

    async def disconnect(self) -> Merged:
        return await self._command({"cmd": "disconnect"}, "disconnected", 60)

    async def reconnect(self, head: int, wait_s: float) -> Merged:
        return await self._command(
            {"cmd": "reconnect", "head": head, "timeout": wait_s}, "reconnected", wait_s + 120
        )

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None and proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    proc.stdin.write(b'{"cmd":"close"}\n')
                    await proc.stdin.drain()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self.procs = []


if __name__ == "__main__":
    worker_main()
