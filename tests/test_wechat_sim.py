"""The WeChat simulator against the REAL itchat-uos 1.4.1: login, messages, endings, hot reload.

Each test gets its own simulator on a free port with short long-poll periods, and plays the
phone through the control API while itchat runs on a background thread.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import itchat
import pytest
from sim_fixtures import WAIT, ItchatRun

from tools.wechat_sim import SimClient, SimError, SimServer

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
POLL_SECONDS = 0.5

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sim() -> Iterator[SimServer]:
    server = SimServer(poll_seconds=POLL_SECONDS).start()
    previous = itchat.config.BASE_URL
    # Process-global in itchat: every Core of this test talks to this simulator.
    itchat.config.BASE_URL = server.base_url
    try:
        yield server
    finally:
        itchat.config.BASE_URL = previous
        server.stop()


@pytest.fixture
def phone(sim: SimServer) -> Iterator[SimClient]:
    with sim.client() as client:
        yield client


@pytest.fixture
def new_run(sim: SimServer) -> Iterator[Callable[[], ItchatRun]]:
    """A factory of fresh Cores; at teardown every one is stopped and its session closed."""
    runs: list[ItchatRun] = []

    def make() -> ItchatRun:
        run = ItchatRun(itchat.new_instance())
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.stop()
    # Stopping the simulator releases held syncchecks, so the receive loops end at once.
    sim.stop()
    for run in runs:
        run.join()
        if run.logged_in.is_set():
            run.exited.wait(WAIT)
        run.core.s.close()


def scan_and_confirm(run: ItchatRun, phone: SimClient) -> None:
    phone.wait(phase="waiting_scan")
    run.wait_qr(lambda c: c.status == "0")
    phone.scan()
    run.wait_qr(lambda c: c.status == "201")
    phone.confirm()
    assert run.logged_in.wait(WAIT), run.error


@pytest.fixture
def logged_in(new_run: Callable[[], ItchatRun], phone: SimClient) -> ItchatRun:
    run = new_run().start()
    scan_and_confirm(run, phone)
    return run


# --- login ---------------------------------------------------------------------------------


def test_qr_scan_confirm_logs_in_with_png_qr_and_201(
    new_run: Callable[[], ItchatRun], phone: SimClient
) -> None:
    run = new_run().start()
    state = phone.wait(phase="waiting_scan")
    first = run.wait_qr(lambda c: c.status == "0")
    assert first.uuid == state["uuid"]
    assert first.qrcode.startswith(PNG_SIGNATURE)

    phone.scan()
    assert run.wait_qr(lambda c: c.status == "201").uuid == first.uuid
    assert phone.state()["phase"] == "scanned"

    phone.confirm()
    assert run.logged_in.wait(WAIT), run.error
    assert run.wait_qr(lambda c: c.status == "200").uuid == first.uuid
    state = phone.wait(phase="logged_in")
    assert state["logged_in"]
    assert state["qr_codes"] == [first.uuid]
    assert state["requests"]["jslogin"] == 1
    assert state["requests"]["webwxgetcontact"] >= 2, "contacts must be paged via Seq"
    assert run.finished.wait(WAIT)
    assert run.error is None


def test_login_loads_user_friends_group_and_official_accounts_with_emoji(
    logged_in: ItchatRun,
) -> None:
    core = logged_in.core
    assert core.storageClass.nickName == "小明 🐱"
    friends = {f["NickName"] for f in core.get_friends()}
    assert {"张三", "李四 🌸", "妈妈 ❤️"} <= friends
    (family,) = core.get_chatrooms()
    assert family["NickName"] == "家人群 👨\u200d👩\u200d👧"
    assert {m["NickName"] for m in family["MemberList"]} >= {"妈妈 ❤️", "王五", "小明 🐱"}
    mps = {m["NickName"] for m in core.get_mps()}
    assert "腾讯新闻" in mps
    assert not any(f["NickName"] == "腾讯新闻" for f in core.get_friends())


def test_scanned_poll_carries_avatar_data_url(sim: SimServer, phone: SimClient) -> None:
    with httpx.Client(base_url=sim.base_url) as http:
        js = http.get("/jslogin", params={"appid": "wx782c26e4c19acffb", "fun": "new"}).text
        match = re.search(r'window.QRLogin.code = (\d+); window.QRLogin.uuid = "(\S+?)";', js)
        assert match is not None
        assert match.group(1) == "200"
        phone.scan()
        body = http.get("/cgi-bin/mmwebwx-bin/login", params={"uuid": match.group(2)}).text
    assert body.startswith("window.code=201;")
    avatar = re.search(r"window.userAvatar = 'data:img/jpg;base64,([^']+)';", body)
    assert avatar is not None
    assert base64.b64decode(avatar.group(1)).startswith(PNG_SIGNATURE)


def test_login_poll_is_held_then_answers_408(sim: SimServer, phone: SimClient) -> None:
    with httpx.Client(base_url=sim.base_url) as http:
        js = http.get("/jslogin").text
        uuid = js.rsplit('"', 2)[-2]
        response = http.get("/cgi-bin/mmwebwx-bin/login", params={"uuid": uuid})
    assert response.text == "window.code=408;"
    assert response.elapsed.total_seconds() >= POLL_SECONDS * 0.9


def test_scanned_code_keeps_answering_201_until_confirmed(
    new_run: Callable[[], ItchatRun], phone: SimClient
) -> None:
    run = new_run().start()
    phone.wait(phase="waiting_scan")
    phone.scan()
    run.wait_qr(lambda c: c.status == "201")
    polls = phone.state()["requests"]["login"]
    # Two more polls run into the deadline while the phone has not confirmed yet.
    phone.wait(endpoint="login", count=polls + 2)
    after_scan = run.qr_calls[[c.status for c in run.qr_calls].index("201") :]
    assert len(after_scan) >= 2
    assert {c.status for c in after_scan} == {"201"}
    phone.confirm()
    assert run.logged_in.wait(WAIT), run.error


def test_redirect_url_and_cookies_fit_itchat(sim: SimServer, phone: SimClient) -> None:
    with httpx.Client(base_url=sim.base_url) as http:
        uuid = http.get("/jslogin").text.rsplit('"', 2)[-2]
        phone.scan()
        assert http.get("/cgi-bin/mmwebwx-bin/login", params={"uuid": uuid}).text.startswith(
            "window.code=201;"
        )
        phone.confirm()
        body = http.get("/cgi-bin/mmwebwx-bin/login", params={"uuid": uuid}).text
        match = re.search(r'window.redirect_uri="(\S+)";', body)
        assert match is not None
        url = match.group(1)
        assert url.startswith(sim.base_url + "/cgi-bin/mmwebwx-bin/")
        assert "/" not in url[len(sim.base_url + "/cgi-bin/mmwebwx-bin/") :]
        assert "qq.com" not in url
        assert "wechat.com" not in url
        page = httpx.get(url)
    assert "<ret>0</ret>" in page.text
    set_cookies = page.headers.get_list("set-cookie")
    names = {c.split("=", 1)[0] for c in set_cookies}
    assert names == {
        "wxsid",
        "wxuin",
        "webwx_data_ticket",
        "webwxuvid",
        "webwx_auth_ticket",
        "wxloadtime",
    }
    for cookie in set_cookies:
        attributes = cookie.lower()
        assert "secure" not in attributes
        assert "domain=" not in attributes


def test_expired_qr_makes_itchat_fetch_a_new_uuid_and_qr(
    new_run: Callable[[], ItchatRun], phone: SimClient
) -> None:
    run = new_run().start()
    phone.wait(phase="waiting_scan")
    first = run.wait_qr(lambda c: c.status == "0")
    assert phone.expire() == first.uuid
    assert run.wait_qr(lambda c: c.status == "400").uuid == first.uuid
    second = run.wait_qr(lambda c: c.status == "0" and c.uuid != first.uuid)
    assert second.qrcode.startswith(PNG_SIGNATURE)
    assert phone.wait(phase="waiting_scan")["qr_codes"] == [first.uuid, second.uuid]

    phone.scan()
    phone.confirm()
    assert run.logged_in.wait(WAIT), run.error


def test_refused_account_fails_with_keyerror_wxsid(
    new_run: Callable[[], ItchatRun], phone: SimClient
) -> None:
    phone.refuse()
    run = new_run().start()
    phone.wait(phase="waiting_scan")
    phone.scan()
    phone.confirm()
    assert run.finished.wait(WAIT)
    assert isinstance(run.error, KeyError)
    assert run.error.args == ("wxsid",)
    assert not run.logged_in.is_set()
    # itchat leaves isLogging set after this failure; a caller must reset it to retry.
    assert run.core.isLogging is True
    state = phone.state()
    assert state["phase"] == "idle"
    assert not state["logged_in"]
    assert not state["refuse_next"], "refusal applies to one confirmation only"


# --- messages ------------------------------------------------------------------------------


def test_friend_group_and_mp_texts_arrive_unescaped_with_emoji(
    logged_in: ItchatRun, phone: SimClient
) -> None:
    text = "晚上吃火锅？🍲 <b>&amp;</b> 5 > 3\n第二行 😂"
    phone.message(kind="friend", type="text", text=text, from_="李四 🌸")
    msg = logged_in.next_message()
    assert msg["Type"] == "Text"
    assert msg["Text"] == text
    assert msg["User"]["NickName"] == "李四 🌸"

    phone.message(kind="group", type="text", text="到家了吗 🏠", sender="张三")
    msg = logged_in.next_message()
    assert msg["Text"] == "到家了吗 🏠"
    assert msg["FromUserName"].startswith("@@")
    assert msg["ActualNickName"] == "张三"
    assert msg["User"]["NickName"] == "家人群 👨\u200d👩\u200d👧"

    phone.message(kind="mp", type="text", text="早报：今日天气晴 ☀️", from_="腾讯新闻")
    msg = logged_in.next_message()
    assert msg["Text"] == "早报：今日天气晴 ☀️"
    assert type(msg["User"]).__name__ == "MassivePlatform"


def test_media_and_special_messages_arrive_typed(logged_in: ItchatRun, phone: SimClient) -> None:
    phone.message(kind="friend", type="image")
    msg = logged_in.next_message()
    assert (msg["MsgType"], msg["Type"]) == (3, "Picture")
    assert msg["Text"]().startswith(PNG_SIGNATURE)

    phone.message(kind="friend", type="voice")
    msg = logged_in.next_message()
    assert (msg["MsgType"], msg["Type"]) == (34, "Recording")
    assert msg["Text"]()

    phone.message(kind="group", type="video")
    msg = logged_in.next_message()
    assert (msg["MsgType"], msg["Type"]) == (43, "Video")
    assert msg["Text"]()[4:8] == b"ftyp"

    phone.message(kind="friend", type="file", text="报告 📄.pdf")
    msg = logged_in.next_message()
    assert (msg["MsgType"], msg["Type"], msg["FileName"]) == (49, "Attachment", "报告 📄.pdf")
    assert msg["Text"]()

    phone.message(kind="mp", type="link", text="春节档 🎬")
    msg = logged_in.next_message()
    assert (msg["MsgType"], msg["Type"], msg["Text"]) == (49, "Sharing", "春节档 🎬")
    assert msg["Url"].startswith("https://")

    phone.message(kind="friend", type="card", text="赵六 🐼")
    msg = logged_in.next_message()
    assert (msg["MsgType"], msg["Type"]) == (42, "Card")
    assert msg["Text"]["NickName"] == "赵六 🐼"

    phone.message(kind="group", type="system", text="妈妈 ❤️ 邀请 王五 加入了群聊")
    msg = logged_in.next_message()
    assert (msg["MsgType"], msg["Type"], msg["Text"]) == (
        10000,
        "Note",
        "妈妈 ❤️ 邀请 王五 加入了群聊",
    )


def test_raw_entry_is_delivered_as_is(logged_in: ItchatRun, phone: SimClient) -> None:
    me = phone.state()["user_name"]
    friend = next(c for c in phone.contacts()["contacts"] if c["nick_name"] == "张三")
    entry = {
        "MsgId": "1234567890123456789",
        "NewMsgId": 1234567890123456789,
        "FromUserName": friend["user_name"],
        "ToUserName": me,
        "MsgType": 1,
        "Content": "\u05e9\u05dc\u05d5\u05dd &lt;raw&gt;",
        "Url": "",
        "CreateTime": 1700000000,
        "StatusNotifyUserName": "",
    }
    assert phone.raw_message(entry) == "1234567890123456789"
    msg = logged_in.next_message()
    assert msg["Text"] == "\u05e9\u05dc\u05d5\u05dd <raw>"
    assert msg["CreateTime"] == 1700000000


def test_fault_hook_breaks_one_sync_and_itchat_recovers(
    logged_in: ItchatRun, phone: SimClient
) -> None:
    phone.fault("webwxsync", "{broken json")
    phone.message(kind="friend", type="text", text="第二次才到 🐢")
    # The broken answer costs itchat one retry; the message stayed queued and still arrives.
    assert logged_in.next_message()["Text"] == "第二次才到 🐢"
    state = phone.state()
    assert state["faults"] == {}
    assert state["requests"]["webwxsync"] >= 2


def test_reply_is_recorded_by_the_simulator(logged_in: ItchatRun, phone: SimClient) -> None:
    friend = next(f for f in logged_in.core.get_friends() if f["NickName"] == "张三")
    logged_in.core.send("收到 👌", toUserName=friend["UserName"])
    (sent,) = phone.sent()
    assert sent["content"] == "收到 👌"
    assert sent["to"] == friend["UserName"]
    assert sent["type"] == 1


def test_message_before_login_is_refused_with_409(phone: SimClient) -> None:
    with pytest.raises(SimError) as refused:
        phone.message(kind="friend", type="text", text="hi")
    assert refused.value.status == 409


# --- endings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("retcode", [1100, 1101, 1102])
def test_end_runs_exit_callback(logged_in: ItchatRun, phone: SimClient, retcode: int) -> None:
    phone.end(retcode)
    assert logged_in.exited.wait(WAIT)
    state = phone.state()
    assert state["phase"] == "ended"
    assert not state["logged_in"]
    # itchat ends silently on a synccheck retcode: no logout request goes out.
    assert "webwxlogout" not in state["requests"]


def test_explicit_logout_sends_webwxlogout_and_exits(
    logged_in: ItchatRun, phone: SimClient
) -> None:
    logged_in.core.logout()
    assert logged_in.exited.wait(WAIT)
    state = phone.state()
    assert state["requests"]["webwxlogout"] == 1
    assert state["phase"] == "ended"


def test_ended_session_answers_webwxsync_1101(
    sim: SimServer, logged_in: ItchatRun, phone: SimClient
) -> None:
    info = logged_in.core.loginInfo
    phone.end(1102)
    assert logged_in.exited.wait(WAIT)
    with httpx.Client(base_url=sim.base_url) as http:
        reply = http.post(
            "/cgi-bin/mmwebwx-bin/webwxsync",
            params={"sid": info["wxsid"], "skey": ""},
            content=b'{"BaseRequest": {"Sid": "%s", "Uin": "%s"}}'
            % (info["wxsid"].encode(), str(info["wxuin"]).encode()),
        ).json()
        check = http.get(
            "/cgi-bin/mmwebwx-bin/synccheck", params={"sid": info["wxsid"], "uin": info["wxuin"]}
        ).text
    assert reply["BaseResponse"]["Ret"] == 1101
    assert check == 'window.synccheck={retcode:"1102",selector:"0"}'


# --- hot reload ------------------------------------------------------------------------------


@pytest.fixture
def status_file(tmp_path: Path) -> Path:
    # The pickle holds live session credentials: keep it in a private directory.
    private = tmp_path / "itchat"
    private.mkdir(mode=0o700)
    return private / "itchat.pkl"


def hot_login(new_run: Callable[[], ItchatRun], phone: SimClient, status_file: Path) -> ItchatRun:
    run = new_run().start(hotReload=True, statusStorageDir=str(status_file))
    scan_and_confirm(run, phone)
    # The status file is written after loginCallback, when auto_login returns.
    assert run.finished.wait(WAIT)
    assert run.error is None
    assert status_file.exists()
    return run


def test_hot_reload_resumes_the_session_without_a_qr(
    new_run: Callable[[], ItchatRun], phone: SimClient, status_file: Path
) -> None:
    first = hot_login(new_run, phone, status_file)
    first.stop()
    assert first.exited.wait(WAIT)
    # Arrives while no process listens: the resumed session must still get it.
    phone.message(kind="friend", type="text", text="你还在吗？🙂")

    second = new_run().start(hotReload=True, statusStorageDir=str(status_file))
    assert second.logged_in.wait(WAIT), second.error
    assert second.finished.wait(WAIT)
    assert second.error is None
    assert second.qr_calls == []
    assert second.next_message()["Text"] == "你还在吗？🙂"
    state = phone.state()
    assert state["requests"]["jslogin"] == 1
    assert state["phase"] == "logged_in"

    phone.message(kind="group", type="text", text="新消息 ✨")
    assert second.next_message()["Text"] == "新消息 ✨"


def test_hot_reload_after_end_falls_back_to_push_login(
    new_run: Callable[[], ItchatRun], phone: SimClient, status_file: Path
) -> None:
    first = hot_login(new_run, phone, status_file)
    phone.push_login(True)
    phone.end(1101)
    assert first.exited.wait(WAIT)

    second = new_run().start(hotReload=True, statusStorageDir=str(status_file))
    state = phone.wait(phase="scanned")
    (push_uuid,) = state["push_uuids"]
    call = second.wait_qr(lambda c: c.uuid == push_uuid)
    assert call.qrcode == b""
    assert not second.logged_in.is_set()

    phone.confirm()
    assert second.logged_in.wait(WAIT), second.error
    assert second.finished.wait(WAIT)
    assert second.error is None
    state = phone.wait(phase="logged_in")
    assert state["requests"]["jslogin"] == 1, "push login must not fetch a QR code"
    assert all(c.qrcode == b"" for c in second.qr_calls)


def test_hot_reload_after_end_without_push_login_shows_a_new_qr(
    new_run: Callable[[], ItchatRun], phone: SimClient, status_file: Path
) -> None:
    first = hot_login(new_run, phone, status_file)
    phone.end(1100)
    assert first.exited.wait(WAIT)

    second = new_run().start(hotReload=True, statusStorageDir=str(status_file))
    fresh = second.wait_qr(lambda c: c.status == "0")
    assert fresh.qrcode.startswith(PNG_SIGNATURE)
    state = phone.wait(phase="waiting_scan")
    assert state["push_uuids"] == []
    assert state["requests"]["webwxpushloginurl"] == 1
    assert len(state["qr_codes"]) == 2


# --- control API -----------------------------------------------------------------------------


def test_control_api_refuses_out_of_phase_actions_with_json_errors(
    sim: SimServer, phone: SimClient
) -> None:
    for action in (phone.scan, phone.confirm, phone.expire, phone.end):
        with pytest.raises(SimError) as refused:
            action()
        assert refused.value.status == 409
    with httpx.Client(base_url=sim.control_url + "/") as http:
        broken = http.post("message", content=b"{not json")
        unknown = http.post("message", json={"kind": "friend", "type": "hologram"})
        phase = http.get("wait", params={"phase": "dancing"})
    for response in (broken, unknown, phase):
        assert response.status_code == 400
        assert "error" in response.json()


def test_reset_forgets_the_session(logged_in: ItchatRun, phone: SimClient) -> None:
    state = phone.reset()
    assert state["phase"] == "idle"
    assert state["qr_codes"] == []
    assert logged_in.exited.wait(WAIT)


def test_wait_times_out_with_408(phone: SimClient) -> None:
    with pytest.raises(SimError) as timed_out:
        phone.wait(phase="logged_in", timeout=0.2)
    assert timed_out.value.status == 408
