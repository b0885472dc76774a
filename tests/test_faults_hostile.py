"""Hostile WeChat data against the real login service (issue 8).

Each case logs in through the simulator, feeds ONE kind of hostile input — a raw
``AddMsgList`` entry sent as is, or a canned broken answer for the next request to an
endpoint — and then a normal friend text message. That message must be stored and the
session must still be logged in (no ``logged_out``). What the service stored from the
hostile input itself is checked too: it stores what it can, and never the account as the
sender of someone else's message.

The one input itchat itself cannot survive (an unparseable synccheck answer ends its receive
loop) has its own test: a clean ``logged_out`` with a reason, a live service, a relogin.
"""

from __future__ import annotations

import html
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
import requests
from procs import wait_for

from services.login.normalize import CREATE_TIME_MAX, Me, name_text, normalize
from services.login.wechat_http import ITCHAT_REGEX_MAX_CHARS, WireWatch, hangs_itchat
from shared.messages import ChatMessage, ContactCard, valid_unicode
from tools.wechat_sim.wxtext import wire_content

pytest_plugins = ("login_fixtures",)

if TYPE_CHECKING:
    from login_fixtures import LoginProc, LoginRig

WAIT = 15.0
ALIVE_TEXT = "还在吗？正常消息 ✅"
TWO_MB = 2 * 1024 * 1024


@dataclass(frozen=True)
class Chat:
    """Usernames of the simulator's demo account (random per simulator state)."""

    me: str
    friend: str  # 张三
    group: str  # 家人群 👨‍👩‍👧
    member: str  # 王五, in the group, not a friend

    @classmethod
    def of(cls, rig: LoginRig) -> Chat:
        contacts = rig.phone.contacts()
        by_nick = {c["nick_name"]: c for c in contacts["contacts"]}
        group = next(c for c in contacts["contacts"] if c["kind"] == "group")
        member = next(m for m in group["members"] if m["nick_name"] == "王五")
        return cls(
            me=contacts["user"]["user_name"],
            friend=by_nick["张三"]["user_name"],
            group=group["user_name"],
            member=member["user_name"],
        )


Check = Callable[[list[ChatMessage]], None]
"""Asserts what was stored from the hostile input (every message before the normal one)."""


def _new_id() -> str:
    return str(10**18 + secrets.randbelow(9 * 10**18))


def _entry(chat: Chat, *, drop: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    """An AddMsgList entry from 张三 with what itchat needs, overridden by ``fields``."""
    msg_id = _new_id()
    entry: dict[str, Any] = {
        "MsgId": msg_id,
        "NewMsgId": int(msg_id),
        "FromUserName": chat.friend,
        "ToUserName": chat.me,
        "MsgType": 1,
        "Content": "",
        "Url": "",
        "CreateTime": int(time.time()),
        "Status": 3,
        "AppMsgType": 0,
        "FileName": "",
        "FileSize": "",
        "MediaId": "",
    }
    entry.update(fields)
    for key in drop:
        del entry[key]
    return entry


def _sync_answer(
    add: list[dict[str, Any]] | None = None, mod: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A whole webwxsync answer, for ``fault`` bodies."""
    key = {"Count": 1, "List": [{"Key": 1, "Val": int(time.time())}]}
    return {
        "BaseResponse": {"Ret": 0, "ErrMsg": ""},
        "AddMsgCount": len(add or []),
        "AddMsgList": add or [],
        "ModContactCount": len(mod or []),
        "ModContactList": mod or [],
        "SyncKey": key,
        "SyncCheckKey": key,
    }


def _deliver(rig: LoginRig, entry: Any) -> None:
    """Queue a raw entry and wait until itchat has fetched it (its own webwxsync batch)."""
    rig.phone.raw_message(entry)
    wait_for(
        lambda: rig.phone.state()["pending_messages"] == 0,
        timeout=WAIT,
        what="the raw entry fetched by webwxsync",
    )


def _one(stored: list[ChatMessage], msg_id: str) -> ChatMessage:
    assert [m.id for m in stored] == [msg_id], [m.model_dump() for m in stored]
    return stored[0]


def _near_now(value: int) -> bool:
    return abs(value - time.time()) < 120


# --- the hostile inputs, one kind per case ---------------------------------------------------


def huge_text(rig: LoginRig, chat: Chat) -> Check:
    line = "长消息 🐱 <b>不是标签</b> & 5 > 3 👨‍👩‍👧 end\n"
    text = line * (TWO_MB // len(line.encode()) + 1)
    entry = _entry(chat, Content=wire_content(text))
    assert len(json.dumps(entry)) > TWO_MB
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert (msg.type, msg.chat, msg.chat_name) == ("text", "friend", "张三")
        assert msg.text == text

    return check


def huge_app_message_of_unclosed_tags(rig: LoginRig, chat: Chat) -> Check:
    # 2 MB of "<title>" and never a "</title>": a link whose title cannot be found.
    entry = _entry(
        chat,
        MsgType=49,
        AppMsgType=5,
        Url="https://example.com/a",
        FileName="标题 🔗",
        Content="<msg><appmsg>" + "<title>" * (TWO_MB // 7),
    )
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert (msg.type, msg.text) == ("link", "标题 🔗")

    return check


def huge_map_message(rig: LoginRig, chat: Chat) -> Check:
    # A text message with a Url is a location for itchat, which then runs the lazy regex
    # "(.+?\(.+?\))" over the body: quadratic, and it holds the GIL (a 40 KB body froze the
    # whole process for 11 s; 2 MB for hours).
    text = "没有括号的地址 " * (TWO_MB // 22)
    entry = _entry(chat, Url="https://maps.example.com/?q=1", Content=wire_content(text))
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert (msg.type, msg.text) == ("map", text)
        assert msg.media is not None
        assert msg.media.url == "https://maps.example.com/?q=1"

    return check


def missing_msg_type(rig: LoginRig, chat: Chat) -> Check:
    entry = _entry(chat, drop=("MsgType",), Content="没有类型")
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert (msg.type, msg.wechat_type, msg.chat_name) == ("other", None, "张三")

    return check


def msg_type_as_string(rig: LoginRig, chat: Chat) -> Check:
    entry = _entry(chat, MsgType="1", Content=wire_content("类型是字符串 <1> 🙃"))
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert (msg.type, msg.text, msg.wechat_type) == ("text", "类型是字符串 <1> 🙃", 1)

    return check


def unknown_msg_type(rig: LoginRig, chat: Chat) -> Check:
    entry = _entry(chat, MsgType=99999, Content="<msg><weird/></msg>")
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert (msg.type, msg.text, msg.wechat_type) == ("other", "", 99999)

    return check


def numbers_int_refuses(rig: LoginRig, chat: Chat) -> Check:
    # "²" is a digit to str.isdigit() but not to int(); int() refuses more than 4300 digits.
    entry = _entry(chat, MsgType="²", CreateTime="9" * 5000, Content="奇怪的数字")
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert (msg.type, msg.wechat_type, msg.chat_name) == ("other", None, "张三")
        assert _near_now(msg.created_at)

    return check


def content_none(rig: LoginRig, chat: Chat) -> Check:
    entry = _entry(chat, Content=None)
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert (msg.type, msg.text, msg.chat_name) == ("text", "", "张三")

    return check


def create_time_huge(rig: LoginRig, chat: Chat) -> Check:
    entry = _entry(chat, CreateTime=10**20, Content="来自未来")
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        # A browser cannot show a date that far out (new Date(...) is invalid): the time of
        # receipt stands in, as for a missing CreateTime.
        assert _near_now(msg.created_at)
        assert msg.text == "来自未来"

    return check


def create_time_negative(rig: LoginRig, chat: Chat) -> Check:
    entry = _entry(chat, CreateTime=-86400, Content="来自过去")
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert _near_now(msg.created_at)
        assert msg.text == "来自过去"

    return check


def from_user_name_not_a_string(rig: LoginRig, chat: Chat) -> Check:
    entry = _entry(chat, FromUserName=123456789, Content="数字发件人")
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert (msg.chat_id, msg.text, msg.outgoing) == ("123456789", "数字发件人", False)

    return check


def lone_surrogates(rig: LoginRig, chat: Chat) -> Check:
    # JSON may escape half a surrogate pair ("\ud800"); UTF-8 (and so Redis and every
    # browser) cannot carry one.
    entry = _entry(chat, Content="半个\ud800字 \udfff")
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert msg.text == "半个\ufffd字 \ufffd"

    return check


def nul_bytes(rig: LoginRig, chat: Chat) -> Check:
    entry = _entry(chat, Content="空\x00字节\x00 end")
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        assert _one(stored, entry["MsgId"]).text == "空\x00字节\x00 end"

    return check


BAD_UTF8 = b"\xff\xfe \xc3\x28 \xed\xa0\x80"  # invalid bytes, a cut sequence, a UTF-8 surrogate


def invalid_utf8_in_sync_body(rig: LoginRig, chat: Chat) -> Check:
    entry = _entry(chat, Content="坏字节 MARK 结束")
    body = json.dumps(_sync_answer([entry]), ensure_ascii=False).encode()
    rig.phone.fault("webwxsync", body.replace(b"MARK", BAD_UTF8), content_type="application/json")
    # The normal message that follows makes itchat call webwxsync, which gets this answer;
    # the normal message itself comes with the next one.

    def check(stored: list[ChatMessage]) -> None:
        text = _one(stored, entry["MsgId"]).text
        assert text == "坏字节 " + BAD_UTF8.decode("utf-8", "replace") + " 结束"

    return check


def broken_xml_in_app_message(rig: LoginRig, chat: Chat) -> Check:
    entry = _entry(
        chat,
        MsgType=49,
        AppMsgType=5,
        Url="https://example.com/b?x=1&y=<2>",
        FileName="分享 &amp; 链接",
        Content=(
            '<?xml version="1.0"?><msg><appmsg appid="" sdkver="0"><title>未闭合 &amp;'
            "<des><![CDATA[ 没有结尾 <url>https://exa</appmsg>&#xZZ;&bogus;<<<>>>"
        ),
    )
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert (msg.type, msg.text) == ("link", "分享 & 链接")
        assert msg.media is not None
        assert msg.media.url == "https://example.com/b?x=1&y=<2>"

    return check


RTL_NICK_WIRE = '\u202eevil<span class="emoji emoji1f608"></span> \u2066名字\u2069 \u200f'
RTL_NICK = "\u202eevil😈 \u2066名字\u2069 \u200f"


def rtl_and_emoji_in_names_and_text(rig: LoginRig, chat: Chat) -> Check:
    # A new friend arrives by ModContactList (a fault answer), then writes.
    stranger = "@" + secrets.token_hex(16)
    contact = {
        "UserName": stranger,
        "NickName": RTL_NICK_WIRE,
        "RemarkName": "",
        "DisplayName": "",
        "VerifyFlag": 0,
        "Sex": 0,
        "ContactFlag": 3,
        "HeadImgUrl": "",
        "MemberList": [],
    }
    rig.phone.fault("webwxsync", json.dumps(_sync_answer(mod=[contact])))
    content = (
        '\u202egnp.exe<span class="emoji emoji1f4a3"></span> '
        '<span class="emoji emoji1f1e81f1f3"></span> x<span class="emoji emojizzzz"></span>y '
        "👨‍👩‍👧 \u202c&lt;RTL&gt;"
    )
    entry = _entry(chat, FromUserName=stranger, Content=content)
    _deliver(rig, entry)  # its webwxsync gets the fault first, then the real answer

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert (msg.chat, msg.chat_id, msg.chat_name) == ("friend", stranger, RTL_NICK)
        assert msg.sender_name == RTL_NICK
        assert msg.text.startswith("\u202egnp.exe💣 🇨🇳 x")
        assert msg.text.endswith("y 👨‍👩‍👧 \u202c<RTL>")

    return check


def group_prefix_itchat_cannot_split(rig: LoginRig, chat: Chat) -> Check:
    # itchat splits "@sender:<br/>body" only for lowercase names; for anything else it names
    # the account itself as the sender of someone else's message.
    upper = "@" + secrets.token_hex(16).upper()
    entry = _entry(chat, FromUserName=chat.group, Content=f"{upper}:<br/>大写发件人 &amp; 你好")
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert (msg.chat, msg.chat_id, msg.outgoing) == ("group", chat.group, False)
        assert msg.sender_id != chat.me
        assert (msg.sender_id, msg.sender_name) == (upper, None)
        assert msg.text == "大写发件人 & 你好"

    return check


def group_without_prefix(rig: LoginRig, chat: Chat) -> Check:
    entry = _entry(chat, FromUserName=chat.group, Content="没有前缀的群消息")
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        msg = _one(stored, entry["MsgId"])
        assert (msg.chat, msg.outgoing, msg.text) == ("group", False, "没有前缀的群消息")
        assert (msg.sender_id, msg.sender_name) == (None, None)

    return check


ENTITIES = (
    "&amp;amp;lt; &#x1F600; &#0; &#xD800; &#99999999; &nbsp;&copy &lt;script&gt;alert(1)"
    "&lt;/script&gt; &unknown; &#x; &#65&#66 &quot;&apos;&#39; " + "&lt;&gt;" * 2000
)


def html_entities_galore(rig: LoginRig, chat: Chat) -> Check:
    entry = _entry(chat, Content=ENTITIES)
    _deliver(rig, entry)

    def check(stored: list[ChatMessage]) -> None:
        assert _one(stored, entry["MsgId"]).text == html.unescape(ENTITIES)

    return check


def sync_body_not_json(rig: LoginRig, chat: Chat) -> Check:
    rig.phone.fault("webwxsync", "{not json", content_type="application/json")

    def check(stored: list[ChatMessage]) -> None:
        assert stored == []

    return check


def sync_http_500_once(rig: LoginRig, chat: Chat) -> Check:
    rig.phone.fault("webwxsync", "<html>500 Internal Server Error</html>", status=500)

    def check(stored: list[ChatMessage]) -> None:
        assert stored == []

    return check


CASES: list[Callable[[LoginRig, Chat], Check]] = [
    huge_text,
    huge_app_message_of_unclosed_tags,
    huge_map_message,
    missing_msg_type,
    msg_type_as_string,
    unknown_msg_type,
    numbers_int_refuses,
    content_none,
    create_time_huge,
    create_time_negative,
    from_user_name_not_a_string,
    lone_surrogates,
    nul_bytes,
    invalid_utf8_in_sync_body,
    broken_xml_in_app_message,
    rtl_and_emoji_in_names_and_text,
    group_prefix_itchat_cannot_split,
    group_without_prefix,
    html_entities_galore,
    sync_body_not_json,
    sync_http_500_once,
]


def _last_message_id(rig: LoginRig) -> str | None:
    """The id of the newest stored message (reads one entry, not the 2 MB ones before it)."""
    last: list[tuple[str, dict[str, str]]] = rig.rclient.xrevrange(rig.keys.messages, count=1)  # type: ignore[assignment]
    return str(json.loads(last[0][1]["data"])["id"]) if last else None


def _assert_still_logged_in(rig: LoginRig, proc: LoginProc, since: str) -> None:
    events = [d["type"] for _, d in rig.login_events(after=since)]
    assert events == [], f"login events after logging in: {events}"
    assert proc.alive
    assert proc.metric("wxstream_login_logged_in") == 1.0
    assert rig.phone.state()["logged_in"]
    assert rig.phone.state()["faults"] == {}  # every injected answer was served
    log = proc.log_text()
    for bad in ("pump_error", "driver_error", "message_unparseable"):
        assert bad not in log, bad


@pytest.mark.parametrize("inject", CASES, ids=[case.__name__ for case in CASES])
def test_hostile_input_is_survived_and_the_next_message_stored(
    rig: LoginRig, inject: Callable[[LoginRig, Chat], Check]
) -> None:
    proc = rig.start()
    rig.log_in()
    since = rig.last_id()
    check = inject(rig, Chat.of(rig))

    alive_id = rig.phone.message(kind="friend", type="text", text=ALIVE_TEXT, from_="张三")
    wait_for(lambda: _last_message_id(rig) == alive_id, timeout=WAIT, what="the normal message")
    *hostile, alive = [ChatMessage.model_validate(d) for _, d in rig.messages()]
    assert (alive.text, alive.chat_name) == (ALIVE_TEXT, "张三")
    check(hostile)
    _assert_still_logged_in(rig, proc, since)


def test_unparseable_synccheck_ends_the_session_cleanly_and_relogin_works(
    rig: LoginRig,
) -> None:
    """What itchat itself cannot survive.

    itchat-uos 1.4.1 ends its receive loop on any synccheck answer it cannot parse (its
    ``sync_check`` returns None, ``maintain_loop`` sets ``alive = False``), without telling
    WeChat — and the service may not patch itchat. So the expected outcome is a clean
    ``logged_out`` (reason ``unknown``: WeChat said nothing we understand), a live service,
    and a working relogin on request.
    """
    proc = rig.start()
    rig.log_in()
    since = rig.last_id()
    rig.phone.fault("synccheck", "<html>502 Bad Gateway</html>")

    out_id, out = rig.wait_login("logged_out", after=since)
    assert (out["reason"], out["retcode"]) == ("unknown", None)
    assert out["uuid"]
    assert proc.alive
    wait_for(lambda: proc.metric("wxstream_login_logged_in") == 0.0, timeout=WAIT)
    assert proc.metric('wxstream_login_logouts_total{reason="unknown"}') == 1.0
    # Nothing published with it: no new QR code unless asked.
    assert [d["type"] for _, d in rig.login_events(after=since)] == ["logged_out"]

    rig.command("relogin")
    rig.log_in(after=out_id)
    alive_id = rig.phone.message(kind="friend", type="text", text=ALIVE_TEXT, from_="张三")
    wait_for(lambda: _last_message_id(rig) == alive_id, timeout=WAIT, what="the normal message")
    assert "pump_error" not in proc.log_text()
    assert "driver_error" not in proc.log_text()


# --- the fixes, one level down (no processes) -------------------------------------------------

ME = Me(user_name="@me", nick_name="小明 🐱")


def test_lone_surrogates_become_replacement_characters_and_split_pairs_join() -> None:
    assert valid_unicode("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert valid_unicode("\ud83d\ude00") == "😀"
    plain = "普通 😀 \x00"
    assert valid_unicode(plain) is plain
    # Names go through the same: the account's own nickname ends up in logged_in.
    assert name_text("坏\ud800名") == "坏\ufffd名"
    card = ContactCard(user_id="@x\udc00", name="\ud800")
    assert card.model_dump_json() == '{"user_id":"@x\ufffd","name":"\ufffd",' + (
        '"alias":null,"province":null,"city":null}'
    )


@pytest.mark.parametrize(
    ("created", "kept"),
    [(1_700_000_000, True), (CREATE_TIME_MAX, True), (CREATE_TIME_MAX + 1, False),
     (10**20, False), (0, False), (-1, False), ("soon", False)],
)  # fmt: skip
def test_create_time_outside_any_showable_date_is_replaced_by_now(
    created: object, kept: bool
) -> None:
    msg = normalize({"MsgType": 1, "MsgId": "1", "Content": "x", "CreateTime": created}, ME)
    assert (msg.created_at == created) is kept
    assert kept or _near_now(msg.created_at)


def _itchat_group(content: str, **fields: Any) -> dict[str, Any]:
    """A group message as itchat queues it after failing to split it (its fallback)."""
    room = {
        "UserName": "@@room",
        "NickName": "群",
        "MemberList": [{"UserName": "@ABC", "NickName": "王五", "DisplayName": ""}],
    }
    msg = {
        "MsgId": "1",
        "MsgType": 1,
        "FromUserName": "@@room",
        "ToUserName": ME.user_name,
        "Content": content,
        "Url": "",
        "CreateTime": 1_700_000_000,
        "ActualUserName": ME.user_name,
        "ActualNickName": ME.nick_name,
        "IsAt": False,
        "User": room,
    }
    msg.update(fields)
    return msg


def test_a_group_message_itchat_could_not_split_is_not_ours() -> None:
    split = normalize(_itchat_group("@ABC:\n你好\n第二行"), ME)
    assert (split.sender_id, split.sender_name, split.text) == ("@ABC", "王五", "你好\n第二行")
    bare = normalize(_itchat_group("没有前缀"), ME)
    assert (bare.sender_id, bare.sender_name, bare.text) == (None, None, "没有前缀")
    # Our own message in a group keeps us as its sender.
    ours = normalize(_itchat_group("我发的", FromUserName=ME.user_name, ToUserName="@@room"), ME)
    assert (ours.sender_id, ours.outgoing, ours.text) == (ME.user_name, True, "我发的")


def test_only_entries_too_long_for_itchats_regexes_are_withheld() -> None:
    long, short = "x" * (ITCHAT_REGEX_MAX_CHARS + 1), "x" * ITCHAT_REGEX_MAX_CHARS
    assert hangs_itchat({"MsgType": 1, "Url": "u", "Content": long})
    assert hangs_itchat({"MsgType": 10002, "Content": long})
    assert hangs_itchat({"MsgType": 49, "AppMsgType": 2000, "Content": long})
    assert not hangs_itchat({"MsgType": 1, "Url": "u", "Content": short})
    assert not hangs_itchat({"MsgType": 1, "Url": "", "Content": long})  # plain text: linear
    assert not hangs_itchat({"MsgType": 49, "AppMsgType": 5, "Content": long})
    assert not hangs_itchat({"MsgType": 1, "Url": "u", "Content": None})


def test_the_watch_cuts_a_withheld_entry_from_itchats_answer_and_keeps_it_raw() -> None:
    poison = {"MsgId": "1", "MsgType": 1, "Url": "u", "Content": "x" * 10_000}
    normal = {"MsgId": "2", "MsgType": 1, "Url": "", "Content": "好 \ud800"}
    answer = {"BaseResponse": {"Ret": 0}, "AddMsgCount": 2, "AddMsgList": [poison, normal]}
    response = requests.Response()
    response.url = "http://sim/cgi-bin/mmwebwx-bin/webwxsync?sid=s"
    response.status_code = 200
    response._content = json.dumps(answer).encode()
    watch = WireWatch()
    watch(response)
    # What itchat parses (json.loads of r.content as UTF-8): everything but the poison.
    seen = json.loads(response.content.decode("utf-8", "replace"))
    assert (seen["AddMsgCount"], seen["AddMsgList"]) == (1, [normal])
    assert watch.close_batch() == [poison, normal]


@pytest.mark.parametrize(
    ("odd", "number"), [("²", None), ("9" * 5000, None), ("١٢", None), (" 12 ", 12), ("-3", None)]
)
def test_numbers_that_int_refuses_never_make_normalize_raise(odd: str, number: int | None) -> None:
    msg = normalize({"MsgType": odd, "MsgId": "1", "Content": "x", "CreateTime": odd}, ME)
    assert msg.wechat_type == number
    assert msg.created_at == number if number else _near_now(msg.created_at)
