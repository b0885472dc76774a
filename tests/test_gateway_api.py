"""The gateway's REST API and its auth against a real gateway process and real Redis."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import httpx
import pytest
import redis
from gateway_fixtures import SECRET, GatewayFactory, GatewayProc
from procs import wait_for
from pydantic import ValidationError
from starlette.routing import BaseRoute, Mount, Route

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from shared.events import LoggedIn, Notification, User
from shared.keys import Keys
from shared.messages import ChatMessage
from shared.streams import decode, encode, encode_event

PUBLIC = {"/healthz", "/readyz"}


def sign_in(gw: GatewayProc, client: httpx.Client) -> httpx.Response:
    return client.post(f"{gw.url}/api/session", json={"secret": SECRET}, headers={"Origin": gw.url})


def flatten(routes: Sequence[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, including those of included routers (FastAPI keeps them nested)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from flatten(inner.routes)
        else:
            yield route


def test_every_route_but_health_checks_refuses_requests_without_a_session(
    gateway: GatewayProc, redis_url: str
) -> None:
    """Walks the app's own route table, so a route added later is covered too."""
    app = create_app(GatewaySettings(redis_url=redis_url, admin_secret=SECRET))
    checked = 0
    for route in flatten(app.routes):
        if isinstance(route, Mount) or not isinstance(route, Route):
            continue
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in sorted(route.methods or {"GET"}):
            if method == "HEAD":
                continue
            resp = httpx.request(method, f"{gateway.url}{path}", timeout=5)
            if route.path in PUBLIC:
                assert resp.status_code in (200, 503), (method, path)
                continue
            if route.path in ("/api/session", "/api/token") and method == "POST":
                assert resp.status_code == 422  # sign-in itself needs no session, a body
                continue
            assert resp.status_code == 401, (method, path, resp.status_code)
            assert resp.json()["error"]
            checked += 1
    assert checked >= 10


def test_sign_in_sets_a_strict_httponly_cookie_and_opens_the_stream(gateway: GatewayProc) -> None:
    with httpx.Client() as client:
        resp = sign_in(gateway, client)
        assert resp.status_code == 200
        cookie = resp.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain http on loopback
        assert client.get(f"{gateway.url}/api/session").json()["authenticated"] is True
        with client.stream("GET", f"{gateway.url}/stream") as stream:
            assert stream.status_code == 200


def test_cookie_is_secure_behind_tls(gateway: GatewayProc) -> None:
    resp = httpx.post(
        f"{gateway.url}/api/session",
        json={"secret": SECRET},
        headers={"X-Forwarded-Proto": "https", "Origin": f"https://127.0.0.1:{gateway.port}"},
    )
    assert resp.status_code == 200
    assert "Secure" in resp.headers["set-cookie"]


def test_wrong_secret_is_401_and_attempts_are_rate_limited(
    gateway_factory: GatewayFactory,
) -> None:
    gw = gateway_factory(sign_in_attempts_per_minute="3")
    for _ in range(3):
        resp = httpx.post(f"{gw.url}/api/session", json={"secret": "nope"})
        assert resp.status_code == 401
        assert resp.json()["error"] == "wrong secret"
    resp = httpx.post(f"{gw.url}/api/session", json={"secret": SECRET})
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) > 0


def test_cookie_post_from_a_foreign_origin_is_refused(gateway: GatewayProc) -> None:
    with httpx.Client() as client:
        sign_in(gateway, client)
        resp = client.post(f"{gateway.url}/api/logout", headers={"Origin": "https://evil.example"})
        assert resp.status_code == 403
        resp = client.post(f"{gateway.url}/api/logout", headers={"Origin": gateway.url})
        assert resp.status_code == 202


def test_expired_or_forged_tokens_are_refused(gateway: GatewayProc) -> None:
    token = gateway.token()
    version, _expiry, nonce, sig = token.split(".")
    for bad in (
        f"{version}.1.{nonce}.{sig}",  # an edited expiry breaks the signature
        token[:-2] + "xx",
        "v1.9999999999.abc.def",
        "garbage",
    ):
        resp = httpx.get(f"{gateway.url}/api/state", headers={"Authorization": f"Bearer {bad}"})
        assert resp.status_code == 401


def test_session_from_another_key_is_refused(gateway_factory: GatewayFactory) -> None:
    first = gateway_factory(session_key="key-one-0123456789")
    second = gateway_factory(session_key="key-two-0123456789")
    token = first.token()
    resp = httpx.get(f"{second.url}/api/state", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401


def test_state_reports_login_and_unread(
    gateway: GatewayProc, rclient: redis.Redis, keys: Keys
) -> None:
    user = User(id="@me", name="小明 🐱")
    rclient.xadd(keys.events, encode_event(LoggedIn(user=user, via="qr")))  # type: ignore[arg-type]
    rclient.xadd(keys.events, encode_event(Notification(count=3)))  # type: ignore[arg-type]

    def state() -> dict[str, object]:
        body: dict[str, object] = httpx.get(
            f"{gateway.url}/api/state", headers=gateway.auth()
        ).json()
        return body

    wait_for(lambda: state()["unread"] == 3)
    body = state()
    assert body["logged_in"] is True
    assert body["login"] == {"type": "logged_in", "user": user.model_dump(), "via": "qr"}


def _message(i: int) -> ChatMessage:
    return ChatMessage(
        id=f"m{i}", chat="friend", chat_id="@f", chat_name="张三", type="text",
        text=f"你好 {i} 🌸", created_at=1700000000 + i,
    )  # fmt: skip


def test_messages_are_paged_newest_first(
    gateway: GatewayProc, rclient: redis.Redis, keys: Keys
) -> None:
    for i in range(7):
        rclient.xadd(keys.messages, encode("message", _message(i)))  # type: ignore[arg-type]
    rclient.xadd(keys.messages, {"event": "message", "data": "{broken", "ts": "1"})
    auth = gateway.auth()
    first = httpx.get(f"{gateway.url}/api/messages", params={"limit": 4}, headers=auth).json()
    # The broken entry is skipped (and logged), not a 500.
    assert [it["message"]["id"] for it in first["items"]] == ["m6", "m5", "m4"]
    second = httpx.get(
        f"{gateway.url}/api/messages",
        params={"limit": 4, "before": first["next_before"]},
        headers=auth,
    ).json()
    assert [it["message"]["id"] for it in second["items"]] == ["m3", "m2", "m1", "m0"]
    assert second["items"][0]["message"]["text"] == "你好 3 🌸"


@pytest.mark.parametrize(
    ("params", "status"),
    [({"limit": 0}, 422), ({"limit": 999}, 422), ({"before": "nope"}, 400), ({"limit": "x"}, 422)],
)
def test_bad_message_queries_are_4xx_json(
    gateway: GatewayProc, params: dict[str, object], status: int
) -> None:
    resp = httpx.get(f"{gateway.url}/api/messages", params=params, headers=gateway.auth())  # type: ignore[arg-type]
    assert resp.status_code == status
    assert resp.json()["error"]


@pytest.mark.parametrize(
    ("path", "command"),
    [
        ("/api/logout", "logout"),
        ("/api/relogin", "relogin"),
        ("/api/notifications/read", "mark_read"),
    ],
)
def test_commands_are_appended_to_the_commands_stream(
    gateway: GatewayProc, rclient: redis.Redis, keys: Keys, path: str, command: str
) -> None:
    resp = httpx.post(f"{gateway.url}{path}", headers=gateway.auth())
    assert resp.status_code == 202
    body = resp.json()
    assert body["command"] == command
    entries: list[tuple[str, dict[str, str]]] = rclient.xrange(keys.commands)  # type: ignore[assignment]
    assert len(entries) == 1
    entry_id, fields = entries[0]
    assert entry_id == body["id"]
    assert decode(entry_id, fields).event == command


def test_oversized_or_malformed_bodies_are_4xx(gateway: GatewayProc) -> None:
    resp = httpx.post(
        f"{gateway.url}/api/session",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 422
    resp = httpx.post(f"{gateway.url}/api/session", json={"secret": "x" * 5000})
    assert resp.status_code == 422
    assert resp.json()["error"] == "invalid request"


def test_unknown_api_path_is_json_404(gateway: GatewayProc) -> None:
    resp = httpx.get(f"{gateway.url}/api/nope", headers=gateway.auth())
    assert resp.status_code == 404
    assert resp.json()["error"].startswith("no such API endpoint")


def test_production_refuses_a_placeholder_secret() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        GatewaySettings(env="production", admin_secret="change-me")
    with pytest.raises(ValidationError, match="placeholder"):
        GatewaySettings(env="production", admin_secret="short")
    GatewaySettings(env="production", admin_secret="a-long-and-random-secret-value")


def test_readyz_and_metrics_are_served_on_the_ops_port(gateway: GatewayProc) -> None:
    assert httpx.get(f"{gateway.ops_url}/readyz").json()["status"] == "ready"
    text = httpx.get(f"{gateway.ops_url}/metrics").text
    assert "wxstream_gateway_reader_up 1.0" in text
    # /metrics is not on the public port, which the Ingress exposes.
    assert httpx.get(f"{gateway.url}/metrics").status_code in (401, 404)


def test_cors_is_closed_unless_configured_and_then_covers_the_stream(
    gateway_factory: GatewayFactory,
) -> None:
    closed = gateway_factory()
    origin = "https://app.example"
    headers = {**closed.auth(), "Origin": origin}
    with httpx.stream("GET", f"{closed.url}/stream", headers=headers) as resp:
        assert resp.status_code == 200
        assert "access-control-allow-origin" not in resp.headers
    opened = gateway_factory(cors_origins=f'["{origin}"]')
    headers = {**opened.auth(), "Origin": origin}
    with httpx.stream("GET", f"{opened.url}/stream", headers=headers) as resp:
        assert resp.headers["access-control-allow-origin"] == origin
        assert resp.headers["access-control-allow-credentials"] == "true"
    api = httpx.get(f"{opened.url}/api/state", headers=headers)
    assert api.headers["access-control-allow-origin"] == origin
    other = {**opened.auth(), "Origin": "https://evil.example"}
    with httpx.stream("GET", f"{opened.url}/stream", headers=other) as resp:
        assert "access-control-allow-origin" not in resp.headers
