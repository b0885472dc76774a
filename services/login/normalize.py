"""itchat's message dicts → :class:`shared.messages.ChatMessage`, for every kind and type.

itchat has already done some of the work when a message reaches ``core.msgList``: group
messages are split into sender and body, and the body of text-like messages has its emoji
spans, ``<br/>`` and HTML escaping undone. Names are another story: itchat turns their
emoji spans into characters but leaves HTML escaping in place, and fields it never looks at
(file names, contact cards, friend requests) arrive exactly as WeChat sent them. So each
field goes through the decoder that matches what itchat did to it.

:func:`normalize` never raises: a message it cannot make sense of is still returned, as
type ``other`` with whatever could be salvaged, and a log line without its content.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from shared.messages import ChatKind, ChatMessage, ContactCard, Media, MessageType, valid_unicode

log = logging.getLogger(__name__)

_EMOJI_SPAN: Final = re.compile(r'<span class="emoji emoji([0-9a-fA-F]{1,10})"></span>')

# MsgType codes (see the protocol notes); 51 is a "phone opened this chat" status sync and
# not a message anyone sent.
TEXT, IMAGE, VOICE, FRIEND_REQUEST, CARD, VIDEO, EMOTICON, MAP, APP = (
    1,
    3,
    34,
    37,
    42,
    43,
    47,
    48,
    49,
)
MICRO_VIDEO, STATUS_NOTIFY, SYSTEM, RECALL = 62, 51, 10000, 10002
APP_FILE, APP_IMAGE = 6, 8
NOT_MESSAGES: Final = frozenset({STATUS_NOTIFY})

ID_MAX: Final = 64
INT_DIGITS_MAX: Final = 30
# The last second of 9999 (UTC): later times are no date a browser or datetime can show.
CREATE_TIME_MAX: Final = 253_402_300_799


@dataclass(frozen=True, slots=True)
class Me:
    """The logged-in account, to tell outgoing messages and our own chat apart."""

    user_name: str
    nick_name: str


def _codepoints(code: str) -> str | None:
    # WeChat writes most emoji as one code point (4-5 hex digits) and flags and keycaps as
    # two concatenated ones ("1f1e81f1f3").
    size = len(code)
    try:
        if size <= 5:
            return chr(int(code, 16))
        if size % 2 == 0 and size // 2 in (4, 5):
            half = size // 2
            return chr(int(code[:half], 16)) + chr(int(code[half:], 16))
    except (ValueError, OverflowError):
        return None
    return None


def unspan(text: str) -> str:
    """WeChat's ``<span class="emoji emoji1f431"></span>`` → the character itself."""

    def one(match: re.Match[str]) -> str:
        return _codepoints(match.group(1).lower()) or match.group(0)

    return _EMOJI_SPAN.sub(one, text)


def wire_text(value: object) -> str:
    """A field exactly as WeChat sent it: emoji spans, ``<br/>`` and HTML escaping undone."""
    if not isinstance(value, str):
        return "" if value is None else valid_unicode(str(value))
    return valid_unicode(html.unescape(unspan(value).replace("<br/>", "\n")))


def name_text(value: object) -> str:
    """A contact name that itchat has partly decoded (emoji) — undo the rest (escaping)."""
    return wire_text(value)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        # str.isdigit() also accepts "²" and other digits int() refuses, and int() refuses
        # strings of more than 4300 digits: either would make normalize raise.
        if text.isascii() and text.isdigit() and len(text) <= INT_DIGITS_MAX:
            return int(text)
    return None


def _attr(xml: str, name: str) -> str | None:
    match = re.search(rf'\b{re.escape(name)}="([^"]*)"', xml)
    return html.unescape(match.group(1)) if match else None


def _element(xml: str, name: str) -> str | None:
    # str.find, not a lazy regex: ``<name>(.*?)</name>`` retries from every opening tag, so
    # a body of unclosed tags took quadratic time (2 MB of "<title>": hours, the pump stuck).
    # The first opening tag with the first closing tag after it is the regex's match.
    start = xml.find(f"<{name}>")
    if start < 0:
        return None
    start += len(name) + 2
    end = xml.find(f"</{name}>", start)
    if end < 0:
        return None
    body = xml[start:end]
    cdata = re.fullmatch(r"\s*<!\[CDATA\[(.*)\]\]>\s*", body, re.DOTALL)
    return cdata.group(1) if cdata else wire_text(body)


def message_id(msg: Mapping[str, Any]) -> str:
    for key in ("MsgId", "NewMsgId"):
        value = msg.get(key)
        if value not in (None, "", 0):
            text = str(value)
            if len(text) <= ID_MAX:
                return text
            return "h" + hashlib.sha256(text.encode()).hexdigest()[:40]
    # No id at all: derive a stable one, so a redelivery maps to the same id.
    basis = "|".join(
        str(msg.get(k, "")) for k in ("FromUserName", "ToUserName", "CreateTime", "Content")
    )
    return "h" + hashlib.sha256(basis.encode("utf-8", "replace")).hexdigest()[:40]


def _created_at(msg: Mapping[str, Any]) -> int:
    """CreateTime, or the time of receipt when it is missing or no date at all."""
    value = _int(msg.get("CreateTime"))
    return value if value is not None and 0 < value <= CREATE_TIME_MAX else int(time.time())


def _opposite(msg: Mapping[str, Any], me: Me) -> str:
    sender, receiver = str(msg.get("FromUserName", "")), str(msg.get("ToUserName", ""))
    return receiver if sender == me.user_name else sender


def _user(msg: Mapping[str, Any]) -> Mapping[str, Any]:
    user = msg.get("User")
    return user if isinstance(user, Mapping) else {}


def _chat_kind(msg: Mapping[str, Any], me: Me, chat_id: str, msg_type: int | None) -> ChatKind:
    if chat_id.startswith("@@"):
        return "group"
    if chat_id in ("filehelper", me.user_name):
        return "self"
    if chat_id == "fmessage" or msg_type == FRIEND_REQUEST:
        return "system"
    user = _user(msg)
    verify = _int(user.get("VerifyFlag")) or 0
    if type(user).__name__ == "MassivePlatform" or verify & 8:
        return "mp"
    return "friend"


def _chat_name(msg: Mapping[str, Any], chat: ChatKind, me: Me) -> str:
    user = _user(msg)
    if chat == "self":
        return name_text(user.get("NickName")) or name_text(me.nick_name)
    for key in ("RemarkName", "NickName"):
        value = name_text(user.get(key))
        if value:
            return value
    return ""


def _type_of(msg: Mapping[str, Any], msg_type: int | None) -> MessageType:
    if msg_type == TEXT:
        return "map" if msg.get("Url") else "text"
    if msg_type in (IMAGE, EMOTICON):
        return "image"
    if msg_type == VOICE:
        return "voice"
    if msg_type in (VIDEO, MICRO_VIDEO):
        return "video"
    if msg_type == FRIEND_REQUEST:
        return "friend_request"
    if msg_type == CARD:
        return "card"
    if msg_type == MAP:
        return "map"
    if msg_type in (SYSTEM, RECALL):
        return "system"
    if msg_type == APP:
        app_type = _int(msg.get("AppMsgType"))
        if app_type == APP_FILE:
            return "file"
        if app_type == APP_IMAGE:
            return "image"
        if msg.get("Url"):
            return "link"
    return "other"


def _card(info: object) -> ContactCard | None:
    if not isinstance(info, Mapping) or not info.get("UserName"):
        return None
    return ContactCard(
        user_id=str(info["UserName"]),
        name=name_text(info.get("NickName")),
        alias=str(info.get("Alias") or "") or None,
        province=str(info.get("Province") or "") or None,
        city=str(info.get("City") or "") or None,
    )


def _body(msg: Mapping[str, Any], kind: MessageType) -> tuple[str, Media | None]:
    """(text, media) for one message; ``Content`` was already decoded by itchat."""
    content = str(msg.get("Content") or "")
    if kind in ("text", "system"):
        text = msg.get("Text")
        # itchat's 10002 (recall) notice keeps only the readable part in Text.
        return (text if isinstance(text, str) and msg.get("MsgType") == RECALL else content), None
    if kind == "map":
        label = msg.get("Text")
        return (label if isinstance(label, str) else content), Media(url=msg.get("Url") or None)
    if kind == "image":
        return "", Media(
            size=_int(_attr(content, "length")),
            width=_int(msg.get("ImgWidth")) or _int(_attr(content, "cdnthumbwidth")),
            height=_int(msg.get("ImgHeight")) or _int(_attr(content, "cdnthumbheight")),
        )
    if kind == "voice":
        return "", Media(
            size=_int(_attr(content, "length")),
            duration_ms=_int(msg.get("VoiceLength")) or _int(_attr(content, "voicelength")),
        )
    if kind == "video":
        seconds = _int(msg.get("PlayLength")) or _int(_attr(content, "playlength"))
        return "", Media(
            size=_int(_attr(content, "length")),
            duration_ms=seconds * 1000 if seconds is not None else None,
            width=_int(msg.get("ImgWidth")),
            height=_int(msg.get("ImgHeight")),
        )
    if kind == "file":
        name = wire_text(msg.get("FileName")) or (_element(content, "title") or "")
        size = _int(msg.get("FileSize")) or _int(_element(content, "totallen"))
        return name, Media(file_name=name or None, size=size)
    if kind == "link":
        title = _element(content, "title") or wire_text(msg.get("FileName"))
        return title, Media(url=str(msg.get("Url") or "") or None)
    if kind == "card":
        info = msg.get("RecommendInfo")
        name = name_text(info.get("NickName")) if isinstance(info, Mapping) else ""
        return name or (_attr(content, "nickname") or ""), None
    if kind == "friend_request":
        info = msg.get("RecommendInfo")
        greeting = wire_text(info.get("Content")) if isinstance(info, Mapping) else ""
        return greeting or (_attr(content, "content") or ""), None
    # "other": a title if the body has one, never raw XML.
    return _element(content, "title") or "", None


def _sender(
    msg: Mapping[str, Any], me: Me, chat: ChatKind, kind: MessageType, chat_id: str, chat_name: str
) -> tuple[str | None, str | None]:
    if str(msg.get("FromUserName", "")) == me.user_name:
        return me.user_name, name_text(me.nick_name)
    if kind == "system":
        return None, None
    if kind == "friend_request":
        info = msg.get("RecommendInfo")
        if isinstance(info, Mapping) and info.get("UserName"):
            return str(info["UserName"]), name_text(info.get("NickName"))
        return None, None
    if chat == "group":
        actual = msg.get("ActualUserName")
        return (str(actual) if actual else None), (name_text(msg.get("ActualNickName")) or None)
    return chat_id, chat_name or None


def is_message(msg: Mapping[str, Any]) -> bool:
    """False for what itchat queues besides messages (contact-list updates, status syncs)."""
    return "MsgType" in msg and is_raw_message(msg)


def is_raw_message(entry: Mapping[str, Any]) -> bool:
    """An ``AddMsgList`` entry is a message, typed or not, unless it is a status sync."""
    return _int(entry.get("MsgType")) not in NOT_MESSAGES


# A group body after itchat decoded it: the "@sender:<br/>" prefix reads "@sender:\n".
_DECODED_PREFIX: Final = re.compile(r"(@[0-9a-zA-Z]+):\n(.*)", re.DOTALL)


def _member_name(room: Mapping[str, Any], user_name: str) -> str | None:
    members = room.get("MemberList")
    for member in members if isinstance(members, list) else []:
        if isinstance(member, Mapping) and member.get("UserName") == user_name:
            return name_text(member.get("DisplayName") or member.get("NickName")) or None
    return None


def _unguess_group_sender(msg: Mapping[str, Any], me: Me) -> Mapping[str, Any]:
    """Undo itchat's guess for an incoming group message it could not split.

    itchat's pattern knows only lowercase sender names (``@[0-9a-z]*``); for any other
    incoming group message it names the account itself as the sender and leaves the prefix
    in the body. Split the body here when it starts with a prefix, else the sender is unknown.
    (An incoming group message whose prefix names the account looks the same once itchat
    split it; its sender is unknown too — never a stranger's message attributed to us.)
    """
    sender = str(msg.get("FromUserName", ""))
    if (
        msg.get("ActualUserName") != me.user_name
        or sender == me.user_name
        or not sender.startswith("@@")
    ):
        return msg
    fixed = dict(msg)
    content = msg.get("Content")
    split = _DECODED_PREFIX.fullmatch(content) if isinstance(content, str) else None
    if split is None:
        fixed["ActualUserName"] = fixed["ActualNickName"] = None
    else:
        fixed["ActualUserName"], fixed["Content"] = split.group(1), split.group(2)
        fixed["ActualNickName"] = _member_name(_user(msg), split.group(1))
    fixed["IsAt"] = False
    return fixed


def normalize(msg: Mapping[str, Any], me: Me) -> ChatMessage:
    """The ChatMessage for one itchat message; type ``other`` if it cannot be understood."""
    try:
        return _normalize(msg, me)
    except Exception as exc:
        salvaged = salvage(msg, me)
        log.error(
            "message_unparseable",
            extra={
                "msg_id": salvaged.id,
                "wechat_type": salvaged.wechat_type,
                "error": type(exc).__name__,
            },
        )
        return salvaged


def _normalize(msg: Mapping[str, Any], me: Me) -> ChatMessage:
    msg = _unguess_group_sender(msg, me)
    msg_type = _int(msg.get("MsgType"))
    chat_id = _opposite(msg, me)
    chat = _chat_kind(msg, me, chat_id, msg_type)
    chat_name = _chat_name(msg, chat, me)
    kind = _type_of(msg, msg_type)
    text, media = _body(msg, kind)
    sender_id, sender_name = _sender(msg, me, chat, kind, chat_id, chat_name)
    card = _card(msg.get("RecommendInfo")) if kind in ("card", "friend_request") else None
    return ChatMessage(
        id=message_id(msg),
        chat=chat,
        chat_id=chat_id,
        chat_name=chat_name,
        sender_id=sender_id,
        sender_name=sender_name,
        type=kind,
        text=text,
        media=media,
        created_at=_created_at(msg),
        outgoing=str(msg.get("FromUserName", "")) == me.user_name,
        card=card,
        mentioned=bool(msg.get("IsAt")) if chat == "group" else False,
        wechat_type=msg_type,
    )


_GROUP_PREFIX: Final = re.compile(r"^(@[0-9a-zA-Z]+):<br/>(.*)$", re.DOTALL)


def from_raw(
    entry: Mapping[str, Any], me: Me, contact: Callable[[str], Mapping[str, Any] | None]
) -> ChatMessage:
    """A ChatMessage from an ``AddMsgList`` entry as WeChat sent it (itchat never produced it).

    Does by hand the part of itchat's work that matters here — split a group message into
    sender and body, decode the body, attach the contact — then normalizes as usual.
    """
    try:
        msg: dict[str, Any] = dict(entry)
        chat_id = _opposite(msg, me)
        content = str(msg.get("Content") or "")
        if chat_id.startswith("@@"):
            split = _GROUP_PREFIX.match(content)
            if split:
                msg["ActualUserName"], content = split.group(1), split.group(2)
                room = contact(chat_id) or {}
                members = room.get("MemberList") or []
                member = next(
                    (m for m in members if isinstance(m, Mapping)
                     and m.get("UserName") == msg["ActualUserName"]),
                    None,
                )  # fmt: skip
                if member is not None:
                    msg["ActualNickName"] = member.get("DisplayName") or member.get("NickName")
        msg["Content"] = wire_text(content)
        msg["User"] = contact(chat_id) or {"UserName": chat_id}
        msg.setdefault("Url", "")
    except Exception:
        return normalize(entry, me)
    return normalize(msg, me)


def salvage(msg: Mapping[str, Any], me: Me) -> ChatMessage:
    """Whatever can be said about a message that broke the normal path; never raises."""
    try:
        chat_id = _opposite(msg, me)
    except Exception:
        chat_id = ""
    try:
        msg_id = message_id(msg)
    except Exception:
        msg_id = "h" + hashlib.sha256(repr(sorted(map(str, msg))).encode()).hexdigest()[:40]
    try:
        created = _created_at(msg)
    except Exception:
        created = int(time.time())
    chat: ChatKind = "group" if chat_id.startswith("@@") else "friend"
    return ChatMessage(
        id=msg_id,
        chat=chat,
        chat_id=chat_id,
        chat_name="",
        type="other",
        text="",
        created_at=created,
        outgoing=bool(chat_id) and str(msg.get("FromUserName", "")) == me.user_name,
        wechat_type=_int(msg.get("MsgType")),
    )
