"""Redis down when the services start: each one runs, says it is not ready, and starts
working on its own once Redis comes up (no restart, no crash loop)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import redis
from fault_fixtures import Recorder, Services, ready_status, services, wait_status

from shared.keys import Keys
from shared.local_redis import LocalRedis

if TYPE_CHECKING:
    from login_fixtures import LoginRig

__all__ = ["services"]  # fixtures
pytest_plugins = ("login_fixtures",)


@pytest.fixture
def late_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A Redis on a port of its own that the test starts when it chooses."""
    server = LocalRedis(tmp_path / "redis-late", appendonly=True)
    yield server
    server.stop()


@pytest.fixture
def redis_url(late_redis: LocalRedis) -> str:
    return late_redis.url


@pytest.mark.timeout(90)
async def test_services_started_before_redis_wait_not_ready_then_work(
    rig: LoginRig, services: Services, late_redis: LocalRedis, keys: Keys
) -> None:
    gw = services.gateway(late_redis.url, wait="healthz", redis_timeout_seconds="1")
    notifier = services.notifier(late_redis.url, wait="healthz", redis_timeout_seconds="1")
    login = rig.start(wait_ready=False, WX_REDIS_TIMEOUT_SECONDS="1")
    ops = {"gateway": gw.ops_url, "notifier": notifier.ops_url, "login": login.ops_url}

    # Up, but not ready, and saying why; the stream refuses with a 503 the browser retries.
    async with httpx.AsyncClient() as http:
        for name, url in ops.items():
            assert (await http.get(f"{url}/healthz")).status_code == 200, name
            await asyncio.to_thread(wait_status, url, 503, what=f"{name} not ready")
        assert (await http.get(f"{gw.url}/readyz")).json()["checks"]["redis"] is False
        token = await asyncio.to_thread(gw.token)  # signing in needs no Redis
        refused = await http.get(f"{gw.url}/stream", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) > 0
    assert refused.json()["error"]
    listener = Recorder(f"{gw.url}/stream", token).start()
    await listener.wait_for(lambda r: bool(r.refusals))  # turned away while Redis is down

    await asyncio.to_thread(late_redis.start)
    for name, url in ops.items():
        await asyncio.to_thread(wait_status, url, 200, timeout=30, what=f"{name} ready")

    # And they work: the QR code reaches the browser, a message is stored, counted, shown.
    await listener.wait_for(
        lambda r: any(e.event == "login" and e.json()["type"] == "scan_qr_code" for e in r.events)
    )
    await asyncio.to_thread(rig.phone.scan)
    await asyncio.to_thread(rig.phone.confirm)
    await asyncio.to_thread(rig.wait_login, "logged_in")
    await asyncio.to_thread(rig.phone.message, "friend", "text", "起来了 ⏰")
    await listener.wait_for(
        lambda r: any(e.event == "notification" and e.json()["count"] == 1 for e in r.events)
    )
    await listener.stop()
    assert listener.refusals.count(503) >= 1  # it was turned away while Redis was down
    assert [e.event for e in listener.events if e.event == "message"] == ["message"]
    client = redis.Redis.from_url(late_redis.url, decode_responses=True)
    try:
        stored = client.xrange(keys.messages) or []
        assert [json.loads((f or {})["data"])["text"] for _, f in stored] == ["起来了 ⏰"]
    finally:
        client.close()
    for proc in (gw, notifier, login):
        assert proc.alive
        assert proc.log_text().count("Traceback") == 0, proc.module
    assert all(ready_status(url) == 200 for url in ops.values())
