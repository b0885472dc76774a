"""The whole flow with every part real: redis-server, the WeChat simulator, the real itchat in
the login service, the notifier and the gateway as separate processes, and an SSE client over
HTTP. Every event is checked against the browser contract (shared.events)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from gateway_fixtures import GatewayFactory, GatewayProc
from procs import ServiceProc, wait_for
from pydantic import TypeAdapter
from sse import Event, Parser

from shared.events import LoginData, Notification
from shared.local_redis import free_port
from shared.messages import ChatMessage

if TYPE_CHECKING:
    from login_fixtures import LoginRig

pytest_plugins = ("login_fixtures",)

PNG = b"\x89PNG\r\n\x1a\n"
LOGIN = TypeAdapter(LoginData)


class Listener:
    """An SSE client on its own thread, recording every event in order."""

    def __init__(self, gw: GatewayProc, last_event_id: str | None = None) -> None:
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        headers = gw.auth()
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._thread = threading.Thread(
            target=self._run, args=(f"{gw.url}/stream", headers), daemon=True
        )
        self._thread.start()

    def _run(self, url: str, headers: dict[str, str]) -> None:
        parser = Parser()
        try:
            with httpx.stream("GET", url, headers=headers, timeout=60) as resp:
                resp.raise_for_status()
                for text in resp.iter_text():
                    self.events.extend(parser.feed(text))
                    if self._stop.is_set():
                        return
        except BaseException as exc:  # reported by wait()
            self.error = exc

    def wait(self, what: str, pred: Callable[[Event], bool], start: int = 0) -> tuple[int, Event]:
        def found() -> tuple[int, Event] | None:
            if self.error is not None:
                raise AssertionError(f"stream failed: {self.error!r}")
            for i in range(start, len(self.events)):
                if pred(self.events[i]):
                    return i, self.events[i]
            return None

        try:
            hit = wait_for(found, timeout=20, what=what)
        except TimeoutError:
            seen = [(e.event, e.data[:80]) for e in self.events]
            raise AssertionError(f"no {what}; stream so far: {seen}") from None
        assert isinstance(hit, tuple)
        return hit

    def login(self, kind: str, start: int = 0) -> tuple[int, dict[str, Any]]:
        i, event = self.wait(
            f"login {kind}", lambda e: e.event == "login" and e.json()["type"] == kind, start
        )
        return i, event.json()

    def close(self) -> None:
        self._stop.set()


@pytest.fixture
def stack(
    rig: LoginRig, gateway_factory: GatewayFactory, tmp_path: Path
) -> Iterator[tuple[LoginRig, GatewayProc]]:
    notifier = ServiceProc(
        "services.notifier",
        {
            "WX_REDIS_URL": rig.redis_url,
            "WX_ACCOUNT": rig.keys.account,
            "WX_OPS_PORT": str(free_port()),
        },
        tmp_path / "notifier.log",
    ).start()
    gw = gateway_factory()
    yield rig, gw
    notifier.stop()


def test_the_whole_flow_against_the_contract(stack: tuple[LoginRig, GatewayProc]) -> None:
    rig, gw = stack
    listener = Listener(gw)
    rig.start()

    # QR → scan → confirm (avatar) → logged in (user).
    i, qr = listener.login("scan_qr_code")
    LOGIN.validate_python(qr)
    assert base64.b64decode(qr["extra"]).startswith(PNG)
    rig.phone.scan()
    i, confirm = listener.login("confirm_login", i)
    assert confirm["uuid"] == qr["uuid"]
    assert confirm["extra"].startswith("data:")
    rig.phone.confirm()
    i, logged_in = listener.login("logged_in", i)
    LOGIN.validate_python(logged_in)
    assert set(logged_in["user"]) >= {"id", "name", "avatar"}
    assert logged_in["user"]["name"] == "小明 🐱"

    # A friend message and a group message → two message events and the count 2.
    rig.phone.message(kind="friend", text="你好 👋 <b>不是HTML</b>")
    rig.phone.message(kind="group", text="晚上吃饭吗？🍜")
    _, first = listener.wait("message 1", lambda e: e.event == "message", i)
    _, second = listener.wait("message 2", lambda e: e.event == "message", _ + 1)
    friend = ChatMessage.model_validate_json(first.data)
    group = ChatMessage.model_validate_json(second.data)
    assert (friend.chat, friend.text) == ("friend", "你好 👋 <b>不是HTML</b>")
    assert group.chat == "group"
    assert group.sender_name
    i, note = listener.wait(
        "notification 2", lambda e: e.event == "notification" and e.json()["count"] == 2, i
    )
    assert Notification.model_validate_json(note.data).count == 2

    # WeChat ends the session (logged in elsewhere) → logged_out with its reason.
    rig.phone.end(1101)
    i, logged_out = listener.login("logged_out", i)
    LOGIN.validate_python(logged_out)
    assert logged_out["reason"] == "elsewhere"

    # "Log in again": a fresh QR; an expired QR yields another fresh one.
    assert httpx.post(f"{gw.url}/api/relogin", headers=gw.auth()).status_code == 202
    i, qr2 = listener.login("scan_qr_code", i + 1)
    assert qr2["uuid"] != qr["uuid"]
    rig.phone.expire()
    i, qr3 = listener.login("scan_qr_code", i + 1)
    assert qr3["uuid"] != qr2["uuid"]
    assert base64.b64decode(qr3["extra"]).startswith(PNG)

    # WeChat refuses the account → a clear error event.
    rig.phone.refuse(True)
    rig.phone.scan()
    rig.phone.confirm()
    i, error = listener.login("login_error", i)
    LOGIN.validate_python(error)
    assert error["reason"] == "refused"
    assert error["message"]

    # Every event carried an id; a client that drops after event k and comes back with
    # Last-Event-ID gets exactly k+1..n.
    seen = [e.id for e in listener.events]
    assert all(seen)
    listener.close()
    k = len(seen) // 2
    again = Listener(gw, last_event_id=seen[k])
    again.wait("catch-up", lambda e: e.id == seen[-1])
    assert [e.id for e in again.events][: len(seen) - k - 1] == seen[k + 1 :]
    again.close()
