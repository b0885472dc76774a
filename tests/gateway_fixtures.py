"""Run a real gateway process (uvicorn) against the test's Redis, signed in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from procs import ServiceProc

from shared.local_redis import free_port

SECRET = "test-admin-secret-0123456789"


class GatewayProc(ServiceProc):
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.ops_port = free_port()
        super().__init__(
            "services.gateway",
            {
                "WX_HTTP_PORT": str(self.port),
                "WX_OPS_PORT": str(self.ops_port),
                "WX_ADMIN_SECRET": SECRET,
                "WX_READ_BLOCK_MS": "200",
                "WX_KEEPALIVE_SECONDS": "1",
                "WX_DRAIN_SECONDS": "1",
                **env,
            },
            log_path,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    def start_ready(self) -> GatewayProc:
        self.start()
        self.wait_http(f"{self.url}/readyz")
        return self

    def token(self) -> str:
        resp = httpx.post(f"{self.url}/api/token", json={"secret": SECRET})
        resp.raise_for_status()
        token: str = resp.json()["token"]
        return token

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of the gateway's /metrics, 0 when absent."""
        text = httpx.get(f"{self.ops_url}/metrics").text
        wanted = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0


GatewayFactory = Callable[..., GatewayProc]


@pytest.fixture
def gateway_factory(redis_url: str, account: str, tmp_path: Path) -> Iterator[GatewayFactory]:
    started: list[GatewayProc] = []

    def make(**env: str) -> GatewayProc:
        full = {"WX_REDIS_URL": redis_url, "WX_ACCOUNT": account}
        full.update({f"WX_{k.upper()}": v for k, v in env.items()})
        proc = GatewayProc(full, tmp_path / f"gateway-{len(started)}.log")
        started.append(proc)
        return proc.start_ready()

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def gateway(gateway_factory: GatewayFactory) -> GatewayProc:
    return gateway_factory()
