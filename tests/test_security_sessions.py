"""Session expiry, and the login and notifier ops ports exposing nothing but health and
metrics. (Walking the gateway's own routes, cookie flags, origin checks and the sign-in rate
limit are in tests/test_gateway_api.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from fault_fixtures import Services, services
from gateway_fixtures import SECRET, GatewayFactory
from procs import ServiceProc
from pydantic import SecretStr

from services.gateway.auth import COOKIE, Authenticator
from services.gateway.settings import GatewaySettings
from shared.local_redis import free_port
from shared.ops_server import OPS_PATHS

__all__ = ["services"]  # fixtures

TTL = 60  # the smallest session lifetime the settings allow


def forged(now: float, **settings: str) -> str:
    """A token signed with the gateway's own key, issued at ``now``."""
    auth = Authenticator(
        GatewaySettings(admin_secret=SecretStr(SECRET), session_ttl_seconds=TTL, **settings)  # type: ignore[arg-type]
    )
    return auth.issue(now=now)[0]


def test_a_token_past_its_expiry_is_refused_everywhere(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(session_ttl_seconds=str(TTL))
    fresh = gw.token()
    assert int(fresh.split(".")[1]) - time.time() <= TTL
    almost = forged(time.time() - TTL + 10)  # ten seconds left
    expired = forged(time.time() - TTL - 1)  # a second too old
    long_ago = forged(time.time() - 30 * 86400)
    for path in ("/api/state", "/api/session", "/api/messages", "/stream", "/openapi.json"):
        assert status(f"{gw.url}{path}", almost) == 200, path
        for token in (expired, long_ago):
            with httpx.stream("GET", f"{gw.url}{path}", headers=bearer(token)) as resp:
                assert resp.status_code == 401, (path, resp.status_code)
                assert json.loads(resp.read())["error"]
    # The same token in the session cookie: refused the same way.
    resp = httpx.get(f"{gw.url}/api/state", cookies={COOKIE: expired})
    assert resp.status_code == 401
    assert httpx.get(f"{gw.url}/api/state", cookies={COOKIE: almost}).status_code == 200
    # A command with an expired session is not appended.
    assert httpx.post(f"{gw.url}/api/logout", headers=bearer(expired)).status_code == 401


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def status(url: str, token: str) -> int:
    """The status of a GET, without reading the body (a stream never ends)."""
    with httpx.stream("GET", url, headers=bearer(token)) as resp:
        return resp.status_code


def test_session_cookie_lives_no_longer_than_the_session(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(session_ttl_seconds=str(TTL))
    resp = httpx.post(f"{gw.url}/api/session", json={"secret": SECRET}, headers={"Origin": gw.url})
    assert resp.status_code == 200
    assert f"Max-Age={TTL}" in resp.headers["set-cookie"]
    assert resp.json()["expires_at"] - time.time() <= TTL


def test_a_token_signed_with_another_key_or_an_old_secret_is_refused(
    gateway_factory: GatewayFactory,
) -> None:
    gw = gateway_factory(session_ttl_seconds=str(TTL))
    other = Authenticator(
        GatewaySettings(
            admin_secret=SecretStr("another-secret-0123456789"), session_ttl_seconds=TTL
        )
    ).issue()[0]
    assert httpx.get(f"{gw.url}/api/state", headers=bearer(other)).status_code == 401


PROBES = ("/", "/docs", "/openapi.json", "/api/state", "/api/logout", "/stream", "/admin",
          "/debug", "/metrics/x", "/healthz/../api/state", "/%2e%2e/etc/passwd")  # fmt: skip


def test_worker_ops_ports_serve_health_and_metrics_only(
    services: Services, redis_url: str, tmp_path: Path
) -> None:
    """The login service and the notifier have no API: their ops port answers GET /healthz,
    /readyz and /metrics, and 404 or 405 to everything else."""
    notifier = services.notifier(redis_url)
    login_port = free_port()
    login = ServiceProc(
        "services.login",
        {
            "WX_REDIS_URL": redis_url,
            "WX_ACCOUNT": services.account,
            "WX_OPS_PORT": str(login_port),
            "WX_WECHAT_BASE_URL": f"http://127.0.0.1:{free_port()}",  # nothing there
            "WX_SESSION_DIR": str(tmp_path / "session"),
        },
        tmp_path / "login.log",
    )
    services.procs.append(login)
    login.start()
    login.wait_http(f"http://127.0.0.1:{login_port}/healthz")
    checked = 0
    for base in (notifier.ops_url, f"http://127.0.0.1:{login_port}"):
        for path in OPS_PATHS:
            assert httpx.get(f"{base}{path}").status_code in (200, 503), (base, path)
            for method in ("POST", "PUT", "DELETE"):
                assert httpx.request(method, f"{base}{path}").status_code == 405
        for path in PROBES:
            for method in ("GET", "POST", "DELETE"):
                resp = httpx.request(method, f"{base}{path}")
                assert resp.status_code in (404, 405), (base, method, path, resp.status_code)
                checked += 1
    assert checked == 2 * len(PROBES) * 3
