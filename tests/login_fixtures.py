"""Fixtures for the login service's tests: the WeChat simulator, and login processes on it.

Everything is real: a redis-server (conftest), the simulator over HTTP, the real itchat in a
real ``python -m services.login`` process. Tests wait on what lands in the streams or on the
simulator's own wait endpoint, never on the clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from procs import ServiceProc, wait_for

from shared.commands import Command
from shared.keys import Keys
from shared.local_redis import free_port
from shared.streams import encode
from tools.wechat_sim import SimClient, SimServer

WAIT = 15.0
"""Upper bound for one wait; a healthy step takes well under a second."""

Event = tuple[str, dict[str, Any]]


class LoginProc(ServiceProc):
    """A login process and the port of its ops server."""

    def __init__(self, env: dict[str, str], log_path: Path, ops_port: int) -> None:
        super().__init__("services.login", env, log_path)
        self.ops_port = ops_port

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    def metrics(self) -> str:
        return httpx.get(f"{self.ops_url}/metrics", timeout=2.0).text

    def metric(self, line_prefix: str) -> float | None:
        """The value of the first metrics line starting with ``line_prefix`` + space."""
        for line in self.metrics().splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.rsplit(" ", 1)[1])
        return None


@dataclass
class LoginRig:
    redis_url: str
    keys: Keys
    run_dir: Path
    sim: SimServer
    phone: SimClient
    rclient: redis.Redis
    procs: list[LoginProc] = field(default_factory=list)

    @property
    def session_dir(self) -> Path:
        return self.run_dir / "session"

    @property
    def session_file(self) -> Path:
        return self.session_dir / f"{self.keys.account}.pkl"

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "WX_REDIS_URL": self.redis_url,
            "WX_ACCOUNT": self.keys.account,
            "WX_WECHAT_BASE_URL": self.sim.base_url,
            "WX_SESSION_DIR": str(self.session_dir),
            "WX_MEDIA_DIR": str(self.run_dir / "media"),
            "WX_OPS_PORT": str(free_port()),
            "WX_LEASE_TTL_SECONDS": "2.5",
            "WX_LEASE_RENEW_SECONDS": "0.5",
            "WX_LEASE_POLL_SECONDS": "0.1",
            "WX_BACKOFF_BASE_SECONDS": "0.5",
            "WX_BACKOFF_MAX_SECONDS": "2",
            "WX_HTTP_READ_TIMEOUT_SECONDS": "40",
            "WX_LOG_LEVEL": "DEBUG",
        }
        env.update(overrides)
        return env

    def start(self, name: str = "login", *, wait_ready: bool = True, **overrides: str) -> LoginProc:
        env = self.env(**overrides)
        proc = LoginProc(env, self.run_dir / f"{name}.log", int(env["WX_OPS_PORT"]))
        self.procs.append(proc)
        proc.start()
        proc.wait_http(f"{proc.ops_url}/healthz", timeout=WAIT)
        if wait_ready:
            proc.wait_http(f"{proc.ops_url}/readyz", timeout=WAIT)
        return proc

    # --- streams -------------------------------------------------------------------------

    def entries(self, stream: str, after: str = "-") -> list[tuple[str, dict[str, str]]]:
        start = after if after == "-" else f"({after}"
        found: list[tuple[str, dict[str, str]]] = self.rclient.xrange(stream, min=start)  # type: ignore[assignment]
        return [(eid, dict(fields)) for eid, fields in found]

    def login_events(self, after: str = "-") -> list[Event]:
        return [
            (eid, json.loads(fields["data"]))
            for eid, fields in self.entries(self.keys.events, after)
            if fields["event"] == "login"
        ]

    def messages(self, after: str = "-") -> list[Event]:
        return [(eid, json.loads(f["data"])) for eid, f in self.entries(self.keys.messages, after)]

    def last_id(self, stream: str | None = None) -> str:
        last = self.rclient.xrevrange(stream or self.keys.events, count=1)
        return str(last[0][0]) if last else "0-0"

    def wait_login(
        self,
        kind: str,
        *,
        after: str = "-",
        where: Callable[[dict[str, Any]], bool] = lambda data: True,
        timeout: float = WAIT,
    ) -> Event:
        """The first login event of type ``kind`` after ``after`` (waiting for it)."""

        def found() -> Event | None:
            for eid, data in self.login_events(after):
                if data["type"] == kind and where(data):
                    return eid, data
            return None

        try:
            event = wait_for(found, timeout=timeout, what=f"login event {kind}")
        except TimeoutError as exc:
            seen = [d["type"] for _, d in self.login_events(after)]
            logs = "\n".join(p.log_text()[-3000:] for p in self.procs)
            raise AssertionError(f"{exc}; login events seen: {seen}\n{logs}") from None
        assert isinstance(event, tuple)
        return event

    def wait_messages(self, count: int, *, after: str = "-", timeout: float = WAIT) -> list[Event]:
        found = wait_for(
            lambda: (lambda m: m if len(m) >= count else None)(self.messages(after)),
            timeout=timeout,
            what=f"{count} messages",
        )
        assert isinstance(found, list)
        return found

    def command(self, name: str, data: str | None = None) -> str:
        fields = encode(name, Command(origin="test"))
        if data is not None:
            fields["data"] = data
        return str(self.rclient.xadd(self.keys.commands, fields))  # type: ignore[arg-type]

    # --- flows ---------------------------------------------------------------------------

    def log_in(self, after: str = "-") -> dict[str, Any]:
        """Scan and confirm the QR the service shows; the logged_in event's data."""
        self.wait_login("scan_qr_code", after=after)
        self.phone.scan()
        self.phone.confirm()
        return self.wait_login("logged_in", after=after)[1]


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[SimServer]:
    """The simulator; long polls held 0.5 s unless parametrized (``indirect``) otherwise."""
    poll_seconds = float(getattr(request, "param", 0.5))
    with SimServer(poll_seconds=poll_seconds) as server:
        yield server


@pytest.fixture
def phone(sim: SimServer) -> Iterator[SimClient]:
    with sim.client() as client:
        yield client


@pytest.fixture
def rig(
    redis_url: str,
    keys: Keys,
    run_dir: Path,
    sim: SimServer,
    phone: SimClient,
    rclient: redis.Redis,
) -> Iterator[LoginRig]:
    setup = LoginRig(redis_url, keys, run_dir, sim, phone, rclient)
    yield setup
    for proc in setup.procs:
        proc.kill()
