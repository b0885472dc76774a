"""The login service end to end: a real process, the real itchat, the WeChat simulator, Redis.

Each test starts ``python -m services.login`` against a fresh simulator and a fresh account
and watches what the service appends to ``<ns>:events`` and ``<ns>:messages``.
"""

from __future__ import annotations

import base64
import http.server
import threading
import time
from typing import TYPE_CHECKING

import pytest
from procs import wait_for

from shared.messages import ChatMessage
from shared.streams import decode

PNG = b"\x89PNG\r\n\x1a\n"

pytest_plugins = ("login_fixtures",)

if TYPE_CHECKING:
    from login_fixtures import LoginRig

WAIT = 15.0


def test_qr_scan_confirm_publish_every_step_in_order(rig: LoginRig) -> None:
    rig.start()
    _, qr = rig.wait_login("scan_qr_code")
    assert base64.b64decode(qr["extra"]).startswith(PNG)
    rig.phone.scan()
    _, confirm = rig.wait_login("confirm_login")
    assert confirm["uuid"] == qr["uuid"]
    assert confirm["extra"].startswith("data:img/jpg;base64,")
    rig.phone.confirm()
    _, logged_in = rig.wait_login("logged_in")

    contacts = rig.phone.contacts()
    assert logged_in["via"] == "qr"
    assert logged_in["user"] == {
        "id": contacts["user"]["user_name"],
        "name": "小明 🐱",
        "avatar": confirm["extra"],
    }
    assert [d["type"] for _, d in rig.login_events()] == [
        "scan_qr_code",
        "confirm_login",
        "logged_in",
    ]
    # Every entry follows the stream contract and validates against the event models.
    for eid, fields in rig.entries(rig.keys.events):
        decode(eid, fields).payload()


def test_messages_of_every_chat_kind_are_stored_unescaped_with_emoji(rig: LoginRig) -> None:
    rig.start()
    rig.log_in()
    text = "晚上一起吃饭吗？🍜 <i>真的</i> &amp; 5 > 3\n第二行 👨‍👩‍👧"
    rig.phone.message(kind="friend", type="text", text=text, from_="李四")
    rig.phone.message(kind="group", type="text", text="大家好 🎉", sender="王五")
    rig.phone.message(kind="mp", type="text", text="今日天气 ☀️ 晴", from_="中国天气")
    rig.phone.message(kind="friend", type="image", from_="张三")

    stored = [ChatMessage.model_validate(d) for _, d in rig.wait_messages(4)]
    friend, group, mp, image = stored
    assert (friend.chat, friend.chat_name, friend.type, friend.text) == (
        "friend",
        "小李",  # the remark name the user gave 李四
        "text",
        text,
    )
    assert friend.sender_name == "小李"
    assert (group.chat, group.chat_name, group.text) == ("group", "家人群 👨‍👩‍👧", "大家好 🎉")
    assert group.sender_name == "王五"
    assert group.sender_id is not None
    assert group.sender_id != group.chat_id
    assert (mp.chat, mp.chat_name, mp.text) == ("mp", "中国天气 🌦", "今日天气 ☀️ 晴")
    assert image.type == "image"
    assert image.text == ""
    assert image.media is not None
    assert image.media.size
    assert image.media.width == 48
    assert all(not m.outgoing for m in stored)

    # The same messages, in the same order, as live "message" events for browsers.
    live = [
        ChatMessage.model_validate_json(f["data"])
        for _, f in rig.entries(rig.keys.events)
        if f["event"] == "message"
    ]
    assert live == stored


@pytest.mark.parametrize(
    ("retcode", "reason"),
    [(1100, "phone_logout"), (1101, "elsewhere"), (1102, "invalid_session")],
)
def test_session_ended_by_wechat_publishes_logged_out_with_reason(
    rig: LoginRig, retcode: int, reason: str
) -> None:
    proc = rig.start()
    rig.log_in()
    wait_for(rig.session_file.exists, timeout=WAIT, what="session file")
    rig.phone.end(retcode)
    _, out = rig.wait_login("logged_out")
    assert (out["reason"], out["retcode"]) == (reason, str(retcode))
    # WeChat ended it: the saved session must not be resurrected by a restart.
    assert not rig.session_file.exists()
    assert proc.alive
    # And no new QR code unless the user asks for one.
    last = rig.last_id()
    with pytest.raises(TimeoutError):
        wait_for(lambda: rig.login_events(after=last), timeout=1.0)


def test_expired_qr_is_replaced_by_a_fresh_one(rig: LoginRig) -> None:
    rig.start()
    first_id, first = rig.wait_login("scan_qr_code")
    rig.phone.expire()
    _, second = rig.wait_login("scan_qr_code", after=first_id)
    assert second["uuid"] != first["uuid"]
    assert second["extra"] != first["extra"]
    rig.phone.scan()
    rig.phone.confirm()
    rig.wait_login("logged_in")


def test_qr_codes_stop_after_the_limit_until_relogin(rig: LoginRig) -> None:
    rig.start(WX_MAX_QR_CODES="2")
    first_id, _ = rig.wait_login("scan_qr_code")
    rig.phone.expire()
    second_id, _ = rig.wait_login("scan_qr_code", after=first_id)
    rig.phone.expire()
    _, error = rig.wait_login("login_error", after=second_id)
    assert error["reason"] == "qr_timeout"
    assert error["retry_in"] is None
    jslogins = rig.phone.state()["requests"]["jslogin"]
    last = rig.last_id()
    with pytest.raises(TimeoutError):
        wait_for(lambda: rig.login_events(after=last), timeout=1.0)
    assert rig.phone.state()["requests"]["jslogin"] == jslogins

    rig.command("relogin")
    rig.wait_login("scan_qr_code", after=last)


def test_refused_account_reports_refused_and_backs_off(rig: LoginRig) -> None:
    proc = rig.start(WX_BACKOFF_BASE_SECONDS="1", WX_BACKOFF_MAX_SECONDS="4")
    rig.phone.refuse(True)
    rig.wait_login("scan_qr_code")
    rig.phone.scan()
    rig.phone.confirm()
    error_id, error = rig.wait_login("login_error")
    assert error["reason"] == "refused"
    assert "1203" in error["message"]
    assert "网页微信" in error["message"]
    assert 0.5 <= error["retry_in"] <= 1.0
    # One retry after the backoff (a new QR), not a storm of login attempts.
    rig.wait_login("scan_qr_code", after=error_id)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        wait_for(lambda: rig.phone.state()["requests"]["jslogin"] > 2, timeout=2.0)
    assert time.monotonic() - started >= 2.0
    assert proc.alive


def test_unreachable_wechat_reports_unreachable_and_keeps_running(rig: LoginRig) -> None:
    closed = f"http://127.0.0.1:{_closed_port()}"
    proc = rig.start(WX_WECHAT_BASE_URL=closed, WX_BACKOFF_BASE_SECONDS="0.5")
    _, error = rig.wait_login("login_error")
    assert error["reason"] == "unreachable"
    assert error["retry_in"] > 0
    # It retries with growing delays (steps 0.5, 1, 2, 2 s, each at least half taken): at
    # most five reports in 3 s, never a tight loop.
    with pytest.raises(TimeoutError):
        wait_for(lambda: len(rig.login_events()) > 5, timeout=3.0)
    assert proc.alive
    assert "login_failed" in proc.log_text()
    assert proc.metric('wxstream_login_wechat_errors_total{kind="unreachable"}')


def test_logout_command_tells_wechat_and_publishes_logged_out(rig: LoginRig) -> None:
    proc = rig.start()
    rig.log_in()
    wait_for(rig.session_file.exists, timeout=WAIT, what="session file")
    rig.command("logout")
    _, out = rig.wait_login("logged_out")
    assert out["reason"] == "command"
    rig.phone.wait(endpoint="webwxlogout", timeout=WAIT)
    assert not rig.session_file.exists()
    assert proc.metric("wxstream_login_logged_in") == 0.0
    assert proc.metric('wxstream_login_logouts_total{reason="command"}') == 1.0
    # The command was acknowledged by the login group.
    pending = rig.rclient.xpending(rig.keys.commands, "login")
    assert pending["pending"] == 0


def test_logout_while_qr_is_waiting_stops_the_login(rig: LoginRig) -> None:
    rig.start()
    rig.wait_login("scan_qr_code")
    rig.command("logout")
    _, out = rig.wait_login("logged_out")
    assert out["reason"] == "command"
    jslogins = rig.phone.state()["requests"]["jslogin"]
    rig.phone.expire()
    with pytest.raises(TimeoutError):
        wait_for(lambda: rig.phone.state()["requests"]["jslogin"] > jslogins, timeout=1.5)


def test_relogin_after_logout_shows_a_new_qr(rig: LoginRig) -> None:
    rig.start()
    first = rig.log_in()
    rig.command("logout")
    out_id, _ = rig.wait_login("logged_out")
    rig.command("relogin")
    _, _qr = rig.wait_login("scan_qr_code", after=out_id)
    rig.phone.scan()
    rig.phone.confirm()
    _, again = rig.wait_login("logged_in", after=out_id)
    assert again["via"] == "qr"
    assert again["user"]["name"] == first["user"]["name"]


def test_restart_resumes_the_session_without_qr_and_delivers_missed_messages(
    rig: LoginRig,
) -> None:
    first = rig.start("first")
    rig.log_in()
    assert first.stop() == 0
    restart = rig.last_id()
    # Sent while no login process runs: WeChat keeps it for the session.
    rig.phone.message(kind="friend", type="text", text="你在吗？🙂", from_="张三")

    rig.start("second")
    _, resumed = rig.wait_login("logged_in", after=restart)
    assert resumed["via"] == "hot_reload"
    assert resumed["user"]["name"] == "小明 🐱"
    assert resumed["user"]["avatar"].startswith("data:image/png;base64,")
    assert [d["type"] for _, d in rig.login_events(after=restart)] == ["logged_in"]
    (_, missed), *_ = rig.wait_messages(1)
    assert missed["text"] == "你在吗？🙂"
    assert rig.phone.state()["requests"]["jslogin"] == 1


def test_failed_hot_reload_falls_back_to_push_login_then_qr(rig: LoginRig) -> None:
    first = rig.start("first")
    rig.log_in()
    assert first.stop() == 0
    rig.phone.end(1102)  # the saved session dies while no process runs
    rig.phone.push_login(True)
    restart = rig.last_id()

    rig.start("second")
    confirm_id, confirm = rig.wait_login("confirm_login", after=restart)
    assert confirm["uuid"] in rig.phone.state()["push_uuids"]
    assert confirm["extra"].startswith("data:img/jpg;base64,")
    rig.phone.expire()  # nobody confirms on the phone
    _, qr = rig.wait_login("scan_qr_code", after=confirm_id)
    assert qr["uuid"] not in rig.phone.state()["push_uuids"]
    rig.phone.scan()
    rig.phone.confirm()
    _, logged_in = rig.wait_login("logged_in", after=restart)
    assert logged_in["via"] == "qr"


def test_failed_hot_reload_confirmed_push_login_logs_in_via_push(rig: LoginRig) -> None:
    first = rig.start("first")
    rig.log_in()
    assert first.stop() == 0
    rig.phone.end(1101)
    rig.phone.push_login(True)
    restart = rig.last_id()

    rig.start("second")
    rig.wait_login("confirm_login", after=restart)
    rig.phone.confirm()
    _, logged_in = rig.wait_login("logged_in", after=restart)
    assert logged_in["via"] == "push"
    assert not [d for _, d in rig.login_events(after=restart) if d["type"] == "scan_qr_code"]


def test_metrics_follow_the_session(rig: LoginRig) -> None:
    proc = rig.start()
    assert proc.metric("wxstream_login_logged_in") == 0.0
    rig.log_in()
    rig.phone.message(kind="friend", type="text")
    rig.wait_messages(1)
    wait_for(lambda: proc.metric("wxstream_login_logged_in") == 1.0, timeout=WAIT)
    assert proc.metric("wxstream_login_lease_held") == 1.0
    assert proc.metric("wxstream_login_qr_codes_total") == 1.0
    assert proc.metric('wxstream_login_logins_total{via="qr"}') == 1.0
    assert proc.metric('wxstream_login_messages_total{type="text"}') == 1.0
    assert proc.metric("wxstream_redis_up") == 1.0
    rig.phone.end(1100)
    rig.wait_login("logged_out")
    wait_for(lambda: proc.metric("wxstream_login_logged_in") == 0.0, timeout=WAIT)
    assert proc.metric('wxstream_login_logouts_total{reason="phone_logout"}') == 1.0


def _closed_port() -> int:
    from shared.local_redis import free_port

    return free_port()


def test_a_batch_itchat_cannot_process_is_still_stored_from_the_raw_entries(
    rig: LoginRig,
) -> None:
    proc = rig.start()
    rig.log_in()
    contacts = rig.phone.contacts()
    friend = next(c for c in contacts["contacts"] if c["nick_name"] == "张三")
    # No "Url": itchat's produce_msg raises KeyError and drops the whole batch.
    broken = {
        "MsgId": "7000000000000000001",
        "FromUserName": friend["user_name"],
        "ToUserName": contacts["user"]["user_name"],
        "MsgType": 1,
        "Content": '坏了 &lt;3 <span class="emoji emoji1f494"></span>',
        "CreateTime": int(time.time()),
    }
    rig.phone.raw_message(broken)
    (_, recovered), *_ = rig.wait_messages(1)
    assert recovered["id"] == "7000000000000000001"
    assert (recovered["type"], recovered["text"]) == ("text", "坏了 <3 💔")
    assert (recovered["chat"], recovered["chat_name"]) == ("friend", "张三")
    assert "message_recovered_from_raw" in proc.log_text()
    # The receive loop and the pump carry on.
    rig.phone.message(kind="friend", type="text", text="正常 ✅")
    rig.wait_messages(2)
    assert rig.messages()[1][1]["text"] == "正常 ✅"


def test_wechat_going_away_ends_the_session_with_reason_errors(rig: LoginRig) -> None:
    proc = rig.start()
    rig.log_in()
    rig.sim.stop()  # every later request is refused: itchat gives up after six in a row
    _, out = rig.wait_login("logged_out", timeout=20)
    assert (out["reason"], out["retcode"]) == ("errors", None)
    # Nothing says the session itself is over: it is kept for a relogin or a restart.
    assert rig.session_file.exists()
    assert proc.alive
    assert proc.metric('wxstream_login_logouts_total{reason="errors"}') == 1.0


class _Nonsense(http.server.BaseHTTPRequestHandler):
    """A server that answers 200 with nothing itchat understands, to every request."""

    def do_GET(self) -> None:
        body = b"<html>maintenance</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_wechat_answering_nonsense_is_reported_as_protocol_error(rig: LoginRig) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Nonsense)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # itchat asks for a QR uuid once a second for ever when jslogin makes no sense.
        proc = rig.start(
            WX_WECHAT_BASE_URL=f"http://127.0.0.1:{server.server_address[1]}",
            WX_LOGIN_STALL_SECONDS="1.5",
        )
        _, error = rig.wait_login("login_error")
        assert error["reason"] == "protocol"
        assert error["retry_in"] > 0
        assert proc.alive
        assert proc.metric('wxstream_login_wechat_errors_total{kind="stalled"}') == 1.0
    finally:
        server.shutdown()
        server.server_close()


def test_relogin_during_backoff_retries_at_once(rig: LoginRig) -> None:
    rig.start(WX_BACKOFF_BASE_SECONDS="60", WX_BACKOFF_MAX_SECONDS="120")
    rig.phone.refuse(True)
    rig.wait_login("scan_qr_code")
    rig.phone.scan()
    rig.phone.confirm()
    error_id, error = rig.wait_login("login_error")
    assert error["retry_in"] >= 30
    rig.command("relogin")
    rig.wait_login("scan_qr_code", after=error_id, timeout=5)
