"""itchat message dicts → ChatMessage: every kind and type, WeChat's markup undone, and
messages that cannot be understood still stored (as ``other``), never dropped."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from services.login.normalize import Me, is_message, normalize, unspan, wire_text

ME = Me(user_name="@me", nick_name="小明 🐱")


def _msg(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "MsgId": "5909823036894174956",
        "NewMsgId": 5909823036894174956,
        "FromUserName": "@friend",
        "ToUserName": "@me",
        "MsgType": 1,
        "Content": "",
        "Url": "",
        "CreateTime": 1_700_000_000,
        "User": {"UserName": "@friend", "NickName": "张三", "RemarkName": "", "VerifyFlag": 0},
    }
    base.update(fields)
    return base


def test_emoji_spans_become_characters() -> None:
    assert unspan('猫<span class="emoji emoji1f431"></span>') == "猫🐱"
    assert unspan('<span class="emoji emoji1f1e81f1f3"></span>') == "🇨🇳"
    assert unspan('<span class="emoji emoji2600"></span>') == "☀"
    assert (
        unspan('<span class="emoji emojizzzz"></span>') == '<span class="emoji emojizzzz"></span>'
    )


def test_wire_text_undoes_escaping_spans_and_line_breaks() -> None:
    wire = '&lt;b&gt;你好&lt;/b&gt; &amp; <span class="emoji emoji1f44b"></span><br/>下一行'
    assert wire_text(wire) == "<b>你好</b> & 👋\n下一行"


def test_friend_text_uses_remark_name_and_keeps_itchats_decoded_content() -> None:
    user = {"UserName": "@friend", "NickName": "李四 🌸", "RemarkName": "小李 &amp; 同事"}
    msg = normalize(_msg(Content="a < b & 👋\n第二行", User=user), ME)
    assert (msg.chat, msg.type, msg.text) == ("friend", "text", "a < b & 👋\n第二行")
    assert (msg.chat_id, msg.chat_name) == ("@friend", "小李 & 同事")
    assert (msg.sender_id, msg.sender_name) == ("@friend", "小李 & 同事")
    assert msg.id == "5909823036894174956"
    assert msg.created_at == 1_700_000_000
    assert not msg.outgoing


def test_group_text_names_its_sender_and_mention() -> None:
    room = {"UserName": "@@room", "NickName": "家人群 👨‍👩‍👧", "MemberList": []}
    msg = normalize(
        _msg(
            FromUserName="@@room",
            Content="@小明 🐱 吃饭了",
            ActualUserName="@mum",
            ActualNickName="妈妈 ❤️",
            IsAt=True,
            User=room,
        ),
        ME,
    )
    assert (msg.chat, msg.chat_id, msg.chat_name) == ("group", "@@room", "家人群 👨‍👩‍👧")
    assert (msg.sender_id, msg.sender_name, msg.mentioned) == ("@mum", "妈妈 ❤️", True)


def test_official_account_is_mp() -> None:
    mp = {"UserName": "@news", "NickName": "腾讯新闻", "VerifyFlag": 24}
    msg = normalize(_msg(FromUserName="@news", Content="早报", User=mp), ME)
    assert (msg.chat, msg.chat_name, msg.text) == ("mp", "腾讯新闻", "早报")


def test_outgoing_message_from_the_phone_and_file_helper() -> None:
    msg = normalize(
        _msg(
            FromUserName="@me",
            ToUserName="filehelper",
            Content="备忘",
            User={"UserName": "filehelper"},
        ),
        ME,
    )
    assert (msg.chat, msg.chat_id, msg.outgoing) == ("self", "filehelper", True)
    assert (msg.sender_id, msg.sender_name) == ("@me", "小明 🐱")


@pytest.mark.parametrize(
    ("fields", "kind", "text", "media"),
    [
        (
            {"MsgType": 3, "Content": '<msg><img length="199" cdnthumbwidth="48" /></msg>',
             "ImgWidth": 48, "ImgHeight": 48},
            "image", "", {"size": 199, "width": 48, "height": 48},
        ),
        (
            {"MsgType": 34, "VoiceLength": 3000, "Content": '<msg><voicemsg length="427" /></msg>'},
            "voice", "", {"size": 427, "duration_ms": 3000},
        ),
        (
            {"MsgType": 43, "PlayLength": 5, "Content": '<msg><videomsg length="88" /></msg>'},
            "video", "", {"size": 88, "duration_ms": 5000},
        ),
        (
            {"MsgType": 49, "AppMsgType": 6, "FileName": "季度报告 &amp; 计划 📄.pdf",
             "FileSize": "23", "Content": "<msg/>"},
            "file", "季度报告 & 计划 📄.pdf", {"file_name": "季度报告 & 计划 📄.pdf", "size": 23},
        ),
        (
            {"MsgType": 49, "AppMsgType": 5, "Url": "https://example.com/a", "FileName": "x",
             "Content": "<msg><appmsg><title>春节 &amp; 票房 🎬</title></appmsg></msg>"},
            "link", "春节 & 票房 🎬", {"url": "https://example.com/a"},
        ),
        (
            {"MsgType": 1, "Url": "https://maps.example/?q=1", "Text": "深圳湾公园 (南山区)"},
            "map", "深圳湾公园 (南山区)", {"url": "https://maps.example/?q=1"},
        ),
    ],
)  # fmt: skip
def test_media_types_keep_their_metadata(
    fields: dict[str, Any], kind: str, text: str, media: dict[str, Any]
) -> None:
    msg = normalize(_msg(**fields), ME)
    assert (msg.type, msg.text) == (kind, text)
    assert msg.media is not None
    assert {k: v for k, v in msg.media.model_dump().items() if v is not None} == media


def test_card_and_friend_request_carry_the_person() -> None:
    info = {"UserName": "@zhao", "NickName": "赵六 🐼", "Alias": "zhaoliu", "Province": "四川",
            "City": "成都", "Content": "我是赵六 &amp; 想加你"}  # fmt: skip
    card = normalize(_msg(MsgType=42, RecommendInfo=info), ME)
    assert (card.type, card.text) == ("card", "赵六 🐼")
    assert card.card is not None
    assert (card.card.user_id, card.card.alias) == ("@zhao", "zhaoliu")

    request = normalize(
        _msg(MsgType=37, FromUserName="fmessage", RecommendInfo=info, User={"UserName": "@zhao"}),
        ME,
    )
    assert (request.chat, request.type, request.text) == (
        "system",
        "friend_request",
        "我是赵六 & 想加你",
    )
    assert (request.sender_id, request.sender_name) == ("@zhao", "赵六 🐼")


def test_system_notices_have_no_sender() -> None:
    msg = normalize(_msg(MsgType=10000, Content="你已添加了李四 🌸"), ME)
    assert (msg.type, msg.text, msg.sender_id) == ("system", "你已添加了李四 🌸", None)


def test_unknown_type_is_other_without_raw_xml() -> None:
    msg = normalize(
        _msg(MsgType=49, AppMsgType=2000, Content="<msg><appmsg><des>x</des></appmsg></msg>"), ME
    )
    assert (msg.type, msg.text, msg.wechat_type) == ("other", "", 49)


def test_itchat_bookkeeping_records_are_not_messages() -> None:
    assert not is_message({"Type": "System", "SystemInfo": "chatrooms", "Text": ["@@room"]})
    assert not is_message(_msg(MsgType=51))
    assert is_message(_msg())


class _Exploding(Mapping[str, Any]):
    """A message whose fields blow up when touched beyond the basics."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __getitem__(self, key: str) -> Any:
        if key in ("Content", "User", "Url"):
            raise RuntimeError("corrupt")
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def test_a_message_that_breaks_normalization_is_salvaged_as_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    msg = normalize(_Exploding(_msg(Content="秘密内容")), ME)
    assert (msg.type, msg.id, msg.chat_id, msg.text) == (
        "other",
        "5909823036894174956",
        "@friend",
        "",
    )
    assert msg.created_at == 1_700_000_000
    assert "message_unparseable" in caplog.text
    assert "秘密内容" not in caplog.text


def test_hostile_values_never_raise() -> None:
    msg = normalize({"MsgType": "x", "MsgId": "9" * 200, "CreateTime": "soon", "User": 3}, ME)
    assert msg.type == "other"
    assert len(msg.id) <= 64
    assert normalize({}, ME).type == "other"
