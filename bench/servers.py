"""The servers under test, each ONE process: wxstream's gateway and the two peers.

Each is started on free loopback ports against the run's private Redis, waited on until it
answers, and stopped (SIGTERM, then SIGKILL) by pid: never by name.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import redis.asyncio as aredis

from bench import peers_env
from bench.procstat import children
from bench.producer import FLASK_SSE_CHANNEL, Mode
from shared.keys import Keys
from shared.local_redis import free_port

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = "bench"
KEY = Keys(ACCOUNT).events

Kind = Literal["wxstream", "xread", "flask-sse"]
KINDS: tuple[Kind, ...] = ("wxstream", "xread", "flask-sse")


@dataclass
class Server:
    kind: Kind
    redis_url: str
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)  # extra settings (WX_* for the gateway)
    port: int = 0
    ops_port: int = 0
    headers: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    module: str = "services.gateway"  # or an experiment module
    code_dir: Path = REPO  # where services/ and shared/ are imported from (a run's snapshot)

    @property
    def mode(self) -> Mode:
        return "pubsub" if self.kind == "flask-sse" else "stream"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The process that serves the streams (gunicorn's one worker, not its master)."""
        assert self.proc is not None
        if self.kind == "flask-sse":
            kids = children(self.proc.pid)
            if kids:
                return kids[0]
        return self.proc.pid

    def _command(self) -> tuple[list[str], dict[str, str], str]:
        self.port = free_port()
        if self.kind == "wxstream":
            self.ops_port = free_port()
            secret = secrets.token_urlsafe(24)
            env = {
                "WX_REDIS_URL": self.redis_url,
                "WX_ACCOUNT": ACCOUNT,
                "WX_ADMIN_SECRET": secret,
                "WX_HTTP_PORT": str(self.port),
                "WX_OPS_PORT": str(self.ops_port),
                "WX_MAX_STREAMS": "50000",
                "WX_MAX_STREAMS_PER_CLIENT": "50000",
                "WX_LOG_LEVEL": "WARNING",
                **self.env,
            }
            return [sys.executable, "-m", self.module], env, secret
        py = str(peers_env.PYTHON)
        env = {"REDIS_URL": self.redis_url, "STREAM_KEY": KEY, **self.env}
        if self.kind == "xread":
            cmd = [
                py, "-m", "uvicorn", "--app-dir", str(REPO / "bench" / "peers"), "xread_app:app",
                "--host", "127.0.0.1", "--port", str(self.port), "--loop", "uvloop",
                "--http", "httptools", "--log-level", "warning", "--no-access-log",
                "--backlog", "4096",
            ]  # fmt: skip
            return cmd, env, ""
        cmd = [
            str(peers_env.VENV / "bin" / "gunicorn"), "-k", "gevent", "-w", "1",
            "--worker-connections", "50000", "--backlog", "4096",
            "--chdir", str(REPO / "bench" / "peers"), "-b", f"127.0.0.1:{self.port}",
            "--log-level", "warning", "flask_sse_app:app",
        ]  # fmt: skip
        return cmd, env, ""

    def start(self, timeout: float = 30.0) -> Server:
        cmd, env, secret = self._command()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{self.kind}.log").open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                # ``python -m`` imports from its working directory first: the run's snapshot.
                cwd=self.code_dir if self.kind == "wxstream" else REPO,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        health = "/readyz" if self.kind == "wxstream" else "/healthz"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited at start: see {self.log_dir}")
            try:
                if httpx.get(self.url + health, timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.kind} not ready after {timeout}s")
            time.sleep(0.05)
        if self.kind == "flask-sse":
            while not children(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        if secret:
            resp = httpx.post(self.url + "/api/token", json={"secret": secret}, timeout=5.0)
            resp.raise_for_status()
            self.headers = [f"Authorization: Bearer {resp.json()['token']}"]
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # gunicorn's SIGTERM waits up to 30 s for open streams; SIGINT is its quick stop.
        proc.send_signal(signal.SIGINT if self.kind == "flask-sse" else signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            # gunicorn's worker is in the same session: end the group we started.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def metric(self, name: str) -> float:
        """One unlabelled sample of the gateway's /metrics (0 if absent)."""
        text = httpx.get(f"http://127.0.0.1:{self.ops_port}/metrics", timeout=5.0).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    async def subscribed(self, client: aredis.Redis) -> int:
        """How many streams the server has really set up (reading or subscribed)."""
        if self.kind == "wxstream":
            return int(await asyncio.to_thread(self.metric, "wxstream_gateway_connections"))
        if self.kind == "xread":
            info = await client.info("clients")
            return int(info.get("blocked_clients", 0))
        reply = await client.pubsub_numsub(FLASK_SSE_CHANNEL)
        return int(reply[0][1]) if reply else 0

    async def wait_subscribed(self, client: aredis.Redis, n: int, wait_s: float) -> int:
        deadline = time.monotonic() + wait_s
        got = 0
        while time.monotonic() < deadline:
            got = await self.subscribed(client)
            if got >= n:
                return got
            await asyncio.sleep(0.1)
        return got
