"""Build webwxsync ``AddMsgList`` entries the way WeChat shapes each message kind and type."""

from __future__ import annotations

import hashlib
import html
import secrets
import time
from typing import Any, Literal, get_args

from .data import Account, Contact
from .media import FILE_BODY, VIDEO_MP4, VOICE_MP3, picture_png
from .wxtext import wire_content

MessageKind = Literal["friend", "group", "mp"]
MessageType = Literal["text", "image", "voice", "video", "file", "link", "card", "system"]
MESSAGE_KINDS: tuple[str, ...] = get_args(MessageKind)
MESSAGE_TYPES: tuple[str, ...] = get_args(MessageType)

MSG_TYPE_CODES: dict[str, int] = {
    "text": 1,
    "image": 3,
    "voice": 34,
    "card": 42,
    "video": 43,
    "file": 49,
    "link": 49,
    "system": 10000,
}

# Defaults carry markup characters and emoji so that a consumer which forgets to unescape,
# or mangles 4-byte characters, fails visibly.
DEFAULT_TEXT: dict[str, str] = {
    "text": "你好 👋 <b>不是标签</b> & 5 > 3",
    "file": "季度报告 📄.pdf",
    "link": "今日要闻：春节档票房创新高 🎬",
    "card": "赵六 🐼",
    "system": "你已添加了李四 🌸，现在可以开始聊天了。",
}


class MessageError(ValueError):
    """The control request names a contact, member or type the account does not have."""


def new_msg_id() -> str:
    # WeChat message ids are 19-digit decimal strings.
    return str(10**18 + secrets.randbelow(9 * 10**18))


def _xml_attr(value: str) -> str:
    return html.escape(value, quote=True)


def _base(msg_id: str, chat: Contact, me: Contact, msg_type: int) -> dict[str, Any]:
    return {
        "MsgId": msg_id,
        "FromUserName": chat.user_name,
        "ToUserName": me.user_name,
        "MsgType": msg_type,
        "Content": "",
        "Status": 3,
        "ImgStatus": 1,
        "CreateTime": int(time.time()),
        "VoiceLength": 0,
        "PlayLength": 0,
        "FileName": "",
        "FileSize": "",
        "MediaId": "",
        "Url": "",
        "AppMsgType": 0,
        "StatusNotifyCode": 0,
        "StatusNotifyUserName": "",
        "RecommendInfo": {
            "UserName": "",
            "NickName": "",
            "QQNum": 0,
            "Province": "",
            "City": "",
            "Content": "",
            "Signature": "",
            "Alias": "",
            "Scene": 0,
            "VerifyFlag": 0,
            "AttrStatus": 0,
            "Sex": 0,
            "Ticket": "",
            "OpCode": 0,
        },
        "ForwardFlag": 0,
        "AppInfo": {"AppID": "", "Type": 0},
        "HasProductId": 0,
        "Ticket": "",
        "ImgHeight": 0,
        "ImgWidth": 0,
        "SubMsgType": 0,
        "NewMsgId": int(msg_id),
        "OriContent": "",
        "EncryFileName": "",
    }


def _fill_body(entry: dict[str, Any], msg_type: str, text: str, sender: Contact) -> str:
    """Set the type-specific fields of ``entry``; return the raw (unescaped) body text."""
    aes = secrets.token_hex(16)
    if msg_type in ("text", "system"):
        return text
    if msg_type == "image":
        size = len(picture_png())
        entry.update(ImgHeight=48, ImgWidth=48)
        return (
            '<?xml version="1.0"?>\n<msg>\n'
            f'\t<img aeskey="{aes}" encryver="1" cdnthumbaeskey="{aes}" '
            f'cdnthumblength="{size}" cdnthumbheight="48" cdnthumbwidth="48" '
            f'length="{size}" md5="{hashlib.md5(picture_png()).hexdigest()}" />\n</msg>\n'  # noqa: S324
        )
    if msg_type == "voice":
        entry.update(VoiceLength=3000)
        return (
            f'<msg><voicemsg endflag="1" cancelflag="0" forwardflag="0" voiceformat="4" '
            f'voicelength="3000" length="{len(VOICE_MP3)}" bufid="0" '
            f'fromusername="{sender.user_name}" /></msg>'
        )
    if msg_type == "video":
        entry.update(PlayLength=5, ImgHeight=48, ImgWidth=48)
        return (
            '<?xml version="1.0"?>\n<msg>\n'
            f'\t<videomsg aeskey="{aes}" cdnthumbaeskey="{aes}" length="{len(VIDEO_MP4)}" '
            f'playlength="5" cdnthumbwidth="48" cdnthumbheight="48" '
            f'fromusername="{sender.user_name}" isad="0" />\n</msg>\n'
        )
    if msg_type == "file":
        media_id = "@crypt_" + secrets.token_hex(24)
        ext = text.rsplit(".", 1)[-1] if "." in text else ""
        entry.update(AppMsgType=6, FileName=text, FileSize=str(len(FILE_BODY)), MediaId=media_id)
        return (
            f'<msg><appmsg appid="" sdkver="0"><title>{_xml_attr(text)}</title><des></des>'
            f"<type>6</type><appattach><totallen>{len(FILE_BODY)}</totallen>"
            f"<attachid>{media_id}</attachid><fileext>{_xml_attr(ext)}</fileext>"
            f"</appattach></appmsg><fromusername>{sender.user_name}</fromusername></msg>"
        )
    if msg_type == "link":
        url = f"https://news.example.com/a/{secrets.token_hex(6)}"
        entry.update(AppMsgType=5, FileName=text, Url=url)
        return (
            f'<msg><appmsg appid="" sdkver="0"><title>{_xml_attr(text)}</title>'
            f"<des>{_xml_attr(text)}</des><type>5</type><url>{_xml_attr(url)}</url>"
            f"</appmsg><fromusername>{sender.user_name}</fromusername></msg>"
        )
    if msg_type == "card":
        card_user = "@" + secrets.token_hex(16)
        entry["RecommendInfo"].update(
            UserName=card_user, NickName=text, Alias="zhaoliu", Scene=17, Sex=1, Province="四川"
        )
        return (
            f'<?xml version="1.0"?>\n<msg username="{card_user}" '
            f'nickname="{_xml_attr(text)}" alias="zhaoliu" imagestatus="3" scene="17" '
            f'province="四川" city="成都" sign="" sex="1" certflag="0" regionCode="CN" />\n'
        )
    raise MessageError(f"unknown message type {msg_type!r}")


def _pick(account: Account, kind: MessageKind, name: str | None) -> Contact:
    contact_kind: Literal["friend", "group", "mp"] = kind
    if name is None:
        found = account.of_kind(contact_kind)
        if not found:
            raise MessageError(f"the account has no {kind} contact")
        return found[0]
    contact = account.find(name, contact_kind)
    if contact is None:
        raise MessageError(f"no {kind} contact named {name!r}")
    return contact


def _pick_member(room: Contact, me: Contact, name: str | None) -> Contact:
    others = [m for m in room.members if m.user_name != me.user_name]
    if name is None:
        if not others:
            raise MessageError("the group has no other member")
        return others[0]
    for member in room.members:
        if name in (member.user_name, member.nick_name):
            return member
    prefixed = [m for m in room.members if m.nick_name.startswith(name)]
    if len(prefixed) == 1:
        return prefixed[0]
    raise MessageError(f"no member named {name!r} in the group")


def build_message(
    account: Account,
    *,
    kind: MessageKind,
    msg_type: MessageType,
    text: str | None = None,
    from_name: str | None = None,
    sender_name: str | None = None,
) -> dict[str, Any]:
    """One ``AddMsgList`` entry addressed to the account's user."""
    if kind not in MESSAGE_KINDS:
        raise MessageError(f"kind must be one of {', '.join(MESSAGE_KINDS)}")
    if msg_type not in MESSAGE_TYPES:
        raise MessageError(f"type must be one of {', '.join(MESSAGE_TYPES)}")
    chat = _pick(account, kind, from_name)
    sender = _pick_member(chat, account.user, sender_name) if kind == "group" else chat
    msg_id = new_msg_id()
    entry = _base(msg_id, chat, account.user, MSG_TYPE_CODES[msg_type])
    body = _fill_body(
        entry, msg_type, text if text is not None else DEFAULT_TEXT.get(msg_type, ""), sender
    )
    content = wire_content(body)
    # Group messages name their real sender in front of the body; system notices in a group
    # are spoken by nobody and carry no prefix.
    if kind == "group" and msg_type != "system":
        content = f"{sender.user_name}:<br/>{content}"
    entry["Content"] = content
    return entry
