"""Message to badge: a message on the simulated phone → ``notification`` at an SSE client.

The whole pipeline as deployed, each service its own process: the WeChat simulator
(``tools.wechat_sim``), the login service (itchat against the simulator), the notifier and
the gateway, on the run's private Redis. The phone logs in (scan, confirm), then sends
messages one at a time; each is timed from the control API call to the gateway's
``notification`` event carrying the new unread count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from bench.scenarios import Bench, Result
from bench.servers import ACCOUNT, Server
from bench.stats import percentile
from shared.local_redis import free_port
from tools.wechat_sim import SimClient

SPACING_S = 0.4  # between messages: more than the notifier's coalescing window


def _ready(code_dir: Path) -> str | None:
    """Why the pipeline cannot run, or None when its services are importable."""
    for module in ("services.login.__main__", "services.notifier.__main__"):
        out = subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            cwd=code_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            tail = (out.stderr.strip().splitlines() or ["?"])[-1]
            return f"{module} does not import: {tail}"
    return None


class Proc:
    """A service process of the pipeline, stopped by pid (its own session)."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log_dir: Path, code_dir: Path
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / f"{name}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=code_dir,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.name = name

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _wait_http(url: str, proc: Proc, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.name} exited at start")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{proc.name} not answering at {url}")


class Badges:
    """One SSE client of the gateway, keeping the newest unread count and when it came."""

    def __init__(self) -> None:
        self.count = -1
        self.changed = asyncio.Event()
        self.at = 0.0

    async def follow(self, url: str, headers: dict[str, str]) -> None:
        timeout = httpx.Timeout(10.0, read=None)
        async with (
            httpx.AsyncClient(timeout=timeout) as client,
            client.stream("GET", url, headers=headers) as resp,
        ):
            resp.raise_for_status()
            event = ""
            async for line in resp.aiter_lines():
                now = time.time()
                if line.startswith("event:"):
                    event = line.partition(":")[2].strip()
                elif line.startswith("data:") and event == "notification":
                    self.count = int(json.loads(line.partition(":")[2])["count"])
                    self.at = now
                    self.changed.set()
                elif not line:
                    event = ""

    async def wait_count(self, at_least: int, seconds: float) -> float:
        deadline = time.monotonic() + seconds
        while self.count < at_least:
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"unread count stayed {self.count}, wanted {at_least}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return self.at


@contextlib.asynccontextmanager
async def pipeline(bench: Bench, session_dir: Path) -> AsyncIterator[tuple[Server, SimClient]]:
    await bench.client.flushall()
    sim_port = free_port()
    base = f"http://127.0.0.1:{sim_port}"
    common = {"WX_REDIS_URL": bench.redis_url, "WX_ACCOUNT": ACCOUNT, "WX_LOG_LEVEL": "WARNING"}
    procs: list[Proc] = []
    srv = Server(
        "wxstream", bench.redis_url, bench.log_dir, env=bench.gateway_env, code_dir=bench.code_dir
    )
    phone: SimClient | None = None
    try:
        sim = Proc(
            "wechat_sim",
            [
                sys.executable,
                "-m",
                "tools.wechat_sim",
                "--port",
                str(sim_port),
                "--poll-seconds",
                "25",
            ],
            {},
            bench.log_dir,
            bench.code_dir,
        )
        procs.append(sim)
        await asyncio.to_thread(_wait_http, base + "/", sim, 20)
        env = {**common, "WX_WECHAT_BASE_URL": base, "WX_SESSION_DIR": str(session_dir)}
        for name in ("login", "notifier"):
            procs.append(
                Proc(
                    name,
                    [sys.executable, "-m", f"services.{name}"],
                    {**env, "WX_OPS_PORT": str(free_port())},
                    bench.log_dir,
                    bench.code_dir,
                )
            )
        await asyncio.to_thread(srv.start)
        phone = SimClient(base + "/_sim")
        await asyncio.to_thread(phone.wait, phase="waiting_scan", timeout=30)
        await asyncio.to_thread(phone.scan)
        await asyncio.to_thread(phone.confirm)
        await asyncio.to_thread(phone.wait, phase="logged_in", timeout=30)
        # itchat is logged in once it polls synccheck: from then on a message reaches it.
        await asyncio.to_thread(phone.wait, endpoint="synccheck", count=1, timeout=30)
        yield srv, phone
    finally:
        if phone is not None:
            phone.close()
        await asyncio.to_thread(srv.stop)
        for proc in reversed(procs):
            await asyncio.to_thread(proc.stop)


async def measure(bench: Bench, messages: int, repeats: int) -> Result:
    why = _ready(bench.code_dir)
    if why is not None:
        return {"status": f"not measured: {why}"}
    samples: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="wx-bench-session-") as tmp:
            async with pipeline(bench, Path(tmp)) as (srv, phone):
                badges = Badges()
                headers = dict(h.split(": ", 1) for h in srv.headers)
                follower = asyncio.create_task(badges.follow(srv.url + "/stream", headers))
                try:
                    await asyncio.sleep(0.5)
                    for i in range(messages * repeats):
                        want = max(badges.count, 0) + 1
                        t0 = time.time()
                        await asyncio.to_thread(phone.message, "friend", "text", f"bench {i} 🏁")
                        at = await badges.wait_count(want, 10.0)
                        samples.append((at - t0) * 1000)
                        await asyncio.sleep(SPACING_S)
                finally:
                    follower.cancel()
                    with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                        await follower
    except (TimeoutError, RuntimeError, httpx.HTTPError, OSError) as exc:
        return {
            "status": f"not measured: the pipeline failed ({type(exc).__name__}: {exc}); "
            f"{len(samples)} samples before that",
            "partial_samples_ms": samples,
        }
    out: dict[str, Any] = {
        "status": "measured",
        "messages": messages * repeats,
        "samples": len(samples),
        "p50_ms": percentile(samples, 0.5),
        "p90_ms": percentile(samples, 0.9),
        "p99_ms": percentile(samples, 0.99),
        "max_ms": max(samples) if samples else None,
        "samples_ms": [round(s, 2) for s in samples],
    }
    return out
