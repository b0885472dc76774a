"""The scenarios: fan-out, idle capacity, saturation, reconnect storm, replay, smoke.

Each call starts its server on a freshly flushed private Redis, measures one repetition,
stops everything it started and returns a flat dict of figures (raw results are kept by
the run; the report takes medians across repetitions).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aredis

from bench.loadgen import Merged, Swarm
from bench.procstat import CpuMeter, cpu_seconds, listen_drops, rss_bytes
from bench.producer import Producer
from bench.servers import KEY, Kind, Server
from bench.stats import hist_max, hist_percentile, percentile

Result = dict[str, Any]
FD_HEADROOM = 64


@dataclass
class Bench:
    """What every scenario shares: the private Redis and the run's options."""

    redis_url: str
    log_dir: Path
    workers: int = 2
    drain: float = 8.0
    gateway_env: dict[str, str] = field(default_factory=dict)
    gateway_module: str = "services.gateway"
    code_dir: Path = Path(__file__).resolve().parent.parent
    client: aredis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = aredis.Redis.from_url(
            self.redis_url, decode_responses=True, socket_timeout=None
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def connected_clients(self) -> int:
        info = await self.client.info("clients")
        return int(info["connected_clients"])

    async def total_commands(self) -> int:
        info = await self.client.info("stats")
        return int(info["total_commands_processed"])

    @contextlib.asynccontextmanager
    async def server(self, kind: Kind, **env: str) -> AsyncIterator[Server]:
        await self.client.flushall()
        srv = Server(
            kind,
            self.redis_url,
            self.log_dir,
            env={**self.gateway_env, **env},
            module=self.gateway_module,
            code_dir=self.code_dir,
        )
        await asyncio.to_thread(srv.start)
        try:
            yield srv
        finally:
            await asyncio.to_thread(srv.stop)

    @contextlib.asynccontextmanager
    async def swarm(
        self,
        srv: Server,
        n: int,
        *,
        first_seq: int = 1,
        strict: bool = False,
        workers: int | None = None,
        last_id: str | None = None,
    ) -> AsyncIterator[tuple[Swarm, Merged]]:
        swarm = Swarm(
            srv.port,
            n,
            headers=srv.headers,
            first_seq=first_seq,
            workers=workers or self.workers,
            strict=strict,
            last_id=last_id,
            # A WSGI server sends the headers with the first body chunk: for Flask-SSE,
            # that is the first event. Its subscriptions are counted in Redis instead.
            wait_headers=srv.kind != "flask-sse",
        )
        try:
            ready = await swarm.start()
            yield swarm, ready
        finally:
            await swarm.close()


def lag_figures(merged: Merged) -> Result:
    hist = merged.lag_hist()
    return {
        "lag_p50_ms": hist_percentile(hist, 0.50),
        "lag_p99_ms": hist_percentile(hist, 0.99),
        "lag_max_ms": hist_max(hist),
    }


def check_figures(merged: Merged) -> Result:
    return {
        "received": merged.total("received"),
        "lost": merged.total("lost"),
        "duplicated": merged.total("duplicated"),
        "reordered": merged.total("reordered"),
        "resets": merged.total("resets"),
        "bad_data": merged.total("bad_data"),
        "incomplete_clients": merged.total("incomplete"),
        "errors": merged.errors(),
    }


class Window:
    """Server CPU, load-generator CPU and Redis commands over one measured window."""

    def __init__(self, bench: Bench, srv: Server, swarm: Swarm | None = None) -> None:
        self.bench = bench
        self.meter = CpuMeter(srv.pid)
        self.swarm = swarm
        self.lg0 = 0.0
        self.cmds0 = 0
        self.t0 = 0.0

    async def __aenter__(self) -> Window:
        self.cmds0 = await self.bench.total_commands()
        self.t0 = time.monotonic()
        self.meter.start(self.t0)
        self.lg0 = self._lg_cpu()
        return self

    def watch(self, swarm: Swarm) -> None:
        """Count this load generator's CPU from now on."""
        self.swarm = swarm
        self.lg0 = self._lg_cpu()

    def _lg_cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.swarm.pids) if self.swarm else 0.0

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def close(self, producer_commands: int, info_calls: int = 2) -> Result:
        t1 = time.monotonic()
        share = self.meter.stop(t1)
        lg = self._lg_cpu() - self.lg0
        cmds = await self.bench.total_commands() - self.cmds0 - producer_commands - info_calls
        wall = t1 - self.t0
        return {
            "window_s": wall,
            "server_cpu": share,
            "loadgen_cpu": lg / wall,
            "redis_cmds": max(cmds, 0),
            "redis_cmds_per_s": max(cmds, 0) / wall,
        }


async def fanout(bench: Bench, kind: Kind, n: int, rate: float, seconds: float) -> Result:
    """N clients, ``rate`` events/s for ``seconds``: every client must get every event."""
    base = await bench.connected_clients()
    async with bench.server(kind) as srv, bench.swarm(srv, n) as (swarm, ready):
        connected = ready.total("connected")
        subscribed = await srv.wait_subscribed(bench.client, connected, 60)
        await asyncio.sleep(0.5)
        producer = Producer(bench.client, KEY, srv.mode)
        await swarm.window(producer.next_seq)
        async with Window(bench, srv, swarm) as win:
            task = asyncio.create_task(producer.run(rate, seconds))
            await asyncio.sleep(seconds / 2)
            conns = await bench.connected_clients() - base
            produced = await task
            merged = await swarm.expect(produced.last_seq, bench.drain)
            usage = await win.close(produced.commands, info_calls=3)
        span = max(merged.last_recv() - produced.started, produced.ended - produced.started)
        received = merged.total("received")
        return {
            "kind": kind,
            "clients": n,
            "connected": connected,
            "subscribed": subscribed,
            "connect_s": ready.seconds(),
            "rate": rate,
            "events": produced.count,
            "expected": connected * produced.count,
            **check_figures(merged),
            "deliveries_per_s": received / span if span > 0 else 0.0,
            "offered_per_s": connected * rate,
            "drain_s": max(0.0, merged.last_recv() - produced.ended),
            **lag_figures(merged),
            **usage,
            "redis_conns": conns,
        }


def stream_fd_cap() -> int:
    """Streams a server process can hold here: its RLIMIT_NOFILE (inherited from this run,
    whose hard limit an unprivileged sandbox cannot raise) less listeners, Redis and epoll."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1] - FD_HEADROOM


async def idle(bench: Bench, kind: Kind, n: int, settle: float = 3.0) -> Result:
    """How many idle streams one process holds, and the memory each costs."""
    requested, n = n, min(n, stream_fd_cap())
    base = await bench.connected_clients()
    async with bench.server(kind) as srv:
        async with bench.swarm(srv, 10, workers=1):  # warm the code paths first
            await srv.wait_subscribed(bench.client, 10, 30)
        await asyncio.sleep(1.0)
        rss0 = rss_bytes(srv.pid)
        async with bench.swarm(srv, n) as (swarm, ready):
            connected = ready.total("connected")
            subscribed = await srv.wait_subscribed(bench.client, connected, 120)
            meter = CpuMeter(srv.pid)
            meter.start(time.monotonic())
            await asyncio.sleep(settle)
            idle_cpu = meter.stop(time.monotonic())
            rss1 = rss_bytes(srv.pid)
            conns = await bench.connected_clients() - base
            # Prove every stream is alive: one event must reach all of them.
            producer = Producer(bench.client, KEY, srv.mode)
            await swarm.window(producer.next_seq)
            await producer.emit(1)
            merged = await swarm.expect(producer.next_seq - 1, 30.0)
        held = connected - merged.total("incomplete")
        return {
            "kind": kind,
            "clients": n,
            "requested": requested,
            "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            "connected": connected,
            "subscribed": subscribed,
            "held": held,
            "connect_s": ready.seconds(),
            "connect_errors": ready.errors(),
            "rss_before_mb": rss0 / 2**20,
            "rss_after_mb": rss1 / 2**20,
            "kb_per_stream": (rss1 - rss0) / max(connected, 1) / 1024,
            "idle_cpu": idle_cpu,
            "redis_conns": conns,
            **check_figures(merged),
        }


async def saturation(
    bench: Bench, kind: Kind, n: int, rates: list[float], seconds: float, p99_limit_ms: float
) -> Result:
    """Step the event rate up with N clients until p99 lag passes the limit or events are
    lost twice in a row; the best is the highest deliveries/s of a passing step."""
    steps: list[Result] = []
    async with bench.server(kind) as srv, bench.swarm(srv, n) as (swarm, ready):
        connected = ready.total("connected")
        await srv.wait_subscribed(bench.client, connected, 60)
        await asyncio.sleep(0.5)
        producer = Producer(bench.client, KEY, srv.mode)
        for rate in rates:
            await swarm.window(producer.next_seq)
            async with Window(bench, srv, swarm) as win:
                produced = await producer.run(rate, seconds)
                merged = await swarm.expect(produced.last_seq, bench.drain)
                usage = await win.close(produced.commands)
            span = max(merged.last_recv() - produced.started, produced.ended - produced.started)
            step = {
                "rate": rate,
                "offered_per_s": connected * rate,
                "deliveries_per_s": merged.total("received") / span if span > 0 else 0.0,
                **check_figures(merged),
                **lag_figures(merged),
                **usage,
            }
            p99 = step["lag_p99_ms"]
            step["ok"] = bool(step["lost"] == 0 and p99 is not None and p99 <= p99_limit_ms)
            steps.append(step)
            # Two failed steps in a row end the ladder: one alone may be noise, and a
            # server that batches reads (XREAD COUNT) can do better at a higher rate.
            if len(steps) >= 2 and not steps[-1]["ok"] and not steps[-2]["ok"]:
                break
            await asyncio.sleep(2.0 if not step["ok"] else 1.0)
    passing = [s for s in steps if s["ok"]]
    best = max(passing, key=lambda s: s["deliveries_per_s"]) if passing else None
    return {
        "kind": kind,
        "clients": n,
        "connected": connected,
        "best_deliveries_per_s": best["deliveries_per_s"] if best else 0.0,
        "best_rate": best["rate"] if best else None,
        "best_server_cpu": best["server_cpu"] if best else None,
        "best_loadgen_cpu": best["loadgen_cpu"] if best else None,
        "best_lag_p99_ms": best["lag_p99_ms"] if best else None,
        "steps": steps,
    }


async def storm(
    bench: Bench, kind: Kind, n: int, back: int, live_rate: float, wait_s: float
) -> Result:
    """All N clients reconnect at once, ``back`` events behind, while events keep coming."""
    async with bench.server(kind) as srv, bench.swarm(srv, n) as (swarm, ready):
        connected = ready.total("connected")
        await srv.wait_subscribed(bench.client, connected, 60)
        producer = Producer(bench.client, KEY, srv.mode)
        await swarm.window(producer.next_seq)
        await producer.emit(1)  # every client now has a Last-Event-ID
        await swarm.expect(producer.next_seq - 1, 30.0)
        await swarm.disconnect()
        await producer.prefill(back)
        head = producer.next_seq - 1
        await asyncio.sleep(0.5)  # the servers' readers have the missed events by now
        drops0 = listen_drops()
        pc0 = producer.commands
        async with Window(bench, srv, swarm) as win:
            live = asyncio.create_task(producer.run(live_rate, min(wait_s, 5.0)))
            rec = await swarm.reconnect(head, wait_s)
            usage = await win.close(producer.commands - pc0, info_calls=1)
        drops = listen_drops() - drops0
        produced = await live
        final = await swarm.expect(produced.last_seq, bench.drain)
    times = rec.catch_up_times()
    caught = [t for t in times if t >= 0]
    return {
        "kind": kind,
        "clients": n,
        "connected": connected,
        "back": back,
        "reconnected": connected - rec.total("failed"),
        "caught_up": len(caught),
        "all_caught_up_s": max(caught) if len(caught) == len(times) and times else None,
        "catch_up_p50_s": percentile(caught, 0.5),
        "catch_up_p99_s": percentile(caught, 0.99),
        "connect_s": max(float(p.get("connect_seconds", 0.0)) for p in rec.parts),
        "redis_cmds": usage["redis_cmds"],
        "server_cpu": usage["server_cpu"],
        "loadgen_cpu": usage["loadgen_cpu"],
        "listen_drops": drops,
        **check_figures(final),
        "reconnect_errors": rec.errors(),
    }


async def replay(bench: Bench, kind: Kind, behind: int) -> Result:
    """One client ``behind`` events back: how fast does it catch up."""
    async with bench.server(kind) as srv:
        producer = Producer(bench.client, KEY, srv.mode)
        filled = await producer.prefill(behind + 1)
        await asyncio.sleep(1.5)  # let the server's own reader settle first
        async with (
            Window(bench, srv) as win,
            bench.swarm(
                srv, 1, first_seq=filled.first_seq + 1, workers=1, last_id=filled.first_id
            ) as (swarm, ready),
        ):
            win.watch(swarm)  # its CPU from its connect on (it was idle before)
            merged = await swarm.expect(filled.last_seq, 300.0)
            usage = await win.close(0)
    received = merged.total("received")
    elapsed = merged.last_recv() - ready.t0() if merged.last_recv() else None
    return {
        "kind": kind,
        "behind": behind,
        "received": received,
        **check_figures(merged),
        "elapsed_s": elapsed,
        "entries_per_s": received / elapsed if elapsed else 0.0,
        "server_cpu": usage["server_cpu"],
        "loadgen_cpu": usage["loadgen_cpu"],
        "redis_cmds": usage["redis_cmds"],
    }


async def smoke(bench: Bench, kind: Kind, n: int, events: int) -> Result:
    """A small exact run: every id, in order, with the producer's data; then a resume."""
    async with (
        bench.server(kind) as srv,
        bench.swarm(srv, n, strict=True, workers=1) as (
            swarm,
            ready,
        ),
    ):
        connected = ready.total("connected")
        await srv.wait_subscribed(bench.client, connected, 30)
        producer = Producer(bench.client, KEY, srv.mode)
        await swarm.window(producer.next_seq)
        produced = await producer.run(rate=max(events, 1) * 4.0, seconds=0.25)
        live = await swarm.expect(produced.last_seq, 15.0)
        out: Result = {"kind": kind, "clients": n, "connected": connected, "events": produced.count}
        out["live"] = check_figures(live)
        if srv.mode == "stream":  # Flask-SSE cannot resume: pub/sub keeps no history
            await swarm.disconnect()
            missed = await producer.prefill(events)
            rec = await swarm.reconnect(missed.last_seq, 15.0)
            final = await swarm.expect(missed.last_seq, 15.0)
            out["resume"] = {
                **check_figures(final),
                "missed": missed.count,
                "caught_up": len([t for t in rec.catch_up_times() if t >= 0]),
            }
        return out
