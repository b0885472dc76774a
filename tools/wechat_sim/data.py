"""The demo account the simulator logs in: a user, friends, a family group, official accounts.

Names are Chinese with emoji on purpose (4-byte characters, a ZWJ sequence, a variation
selector): past projects broke on exactly these. Usernames are fresh random ids per
simulator state, like WeChat's, which change with every web session.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from .wxtext import wire_name

ContactKind = Literal["self", "friend", "group", "mp", "special"]

# VerifyFlag bits WeChat sets on official accounts; itchat only tests ``& 8``.
MP_VERIFY_FLAG = 24


def _user_name() -> str:
    return "@" + secrets.token_hex(16)


def _room_name() -> str:
    return "@@" + secrets.token_hex(32)


@dataclass(frozen=True)
class Contact:
    user_name: str
    nick_name: str
    kind: ContactKind
    sex: int = 0
    verify_flag: int = 0
    remark_name: str = ""
    signature: str = ""
    province: str = ""
    city: str = ""
    members: tuple[Contact, ...] = ()

    def head_img_url(self) -> str:
        # Relative like WeChat's; itchat prefixes its API base when it fetches one.
        return f"/cgi-bin/mmwebwx-bin/webwxgeticon?seq=0&username={self.user_name}&skey="

    def wire(self) -> dict[str, Any]:
        """The contact as webwxgetcontact/webwxinit/webwxbatchgetcontact carry it."""
        return {
            "Uin": 0,
            "UserName": self.user_name,
            "NickName": wire_name(self.nick_name),
            "HeadImgUrl": self.head_img_url(),
            "ContactFlag": 3 if self.kind == "friend" else 1,
            "MemberCount": len(self.members),
            "MemberList": [m.wire_member() for m in self.members],
            "RemarkName": wire_name(self.remark_name),
            "HideInputBarFlag": 0,
            "Sex": self.sex,
            "Signature": wire_name(self.signature),
            "VerifyFlag": self.verify_flag,
            "OwnerUin": 0,
            "PYInitial": "",
            "PYQuanPin": "",
            "RemarkPYInitial": "",
            "RemarkPYQuanPin": "",
            "StarFriend": 0,
            "AppAccountFlag": 0,
            "Statues": 0,
            "AttrStatus": 0,
            "Province": self.province,
            "City": self.city,
            "Alias": "",
            "SnsFlag": 1 if self.kind == "friend" else 0,
            "UniFriend": 0,
            "DisplayName": "",
            "ChatRoomId": 0,
            "KeyWord": "",
            "EncryChatRoomId": "@" + self.user_name[-32:] if self.kind == "group" else "",
            "IsOwner": 0,
        }

    def wire_member(self) -> dict[str, Any]:
        """The contact as an entry of a chatroom's MemberList."""
        return {
            "Uin": 0,
            "UserName": self.user_name,
            "NickName": wire_name(self.nick_name),
            "AttrStatus": 0,
            "PYInitial": "",
            "PYQuanPin": "",
            "RemarkPYInitial": "",
            "RemarkPYQuanPin": "",
            "MemberStatus": 0,
            "DisplayName": "",
            "KeyWord": "",
        }


@dataclass(frozen=True)
class Account:
    """One WeChat account: the user itself plus everything its address book holds."""

    uin: int
    user: Contact
    contacts: tuple[Contact, ...] = field(default_factory=tuple)

    def of_kind(self, kind: ContactKind) -> list[Contact]:
        return [c for c in self.contacts if c.kind == kind]

    def by_user_name(self, user_name: str) -> Contact | None:
        if user_name == self.user.user_name:
            return self.user
        for contact in self.contacts:
            if contact.user_name == user_name:
                return contact
            for member in contact.members:
                if member.user_name == user_name:
                    return member
        return None

    def find(self, name: str, kind: ContactKind) -> Contact | None:
        """A contact of ``kind`` by username, nickname, remark name or unique nickname prefix."""
        candidates = self.of_kind(kind)
        for contact in candidates:
            if name in (contact.user_name, contact.nick_name) or (
                contact.remark_name and name == contact.remark_name
            ):
                return contact
        prefixed = [c for c in candidates if c.nick_name.startswith(name)]
        return prefixed[0] if len(prefixed) == 1 else None

    def user_wire(self) -> dict[str, Any]:
        """``User`` of webwxinit: the account itself, with its uin."""
        wire = self.user.wire()
        wire["Uin"] = self.uin
        wire["ContactFlag"] = 0
        wire["HeadImgFlag"] = 1
        wire["WebWxPluginSwitch"] = 0
        return wire


def demo_account() -> Account:
    me = Contact(_user_name(), "小明 🐱", "self", sex=1, signature="今天也要开心 ☀️")
    zhang = Contact(_user_name(), "张三", "friend", sex=1, province="广东", city="深圳")
    li = Contact(
        _user_name(), "李四 🌸", "friend", sex=2, remark_name="小李", province="北京", city="海淀"
    )
    mum = Contact(_user_name(), "妈妈 ❤️", "friend", sex=2, signature="注意身体 🙏")
    # Not a friend of the user: only reachable as a member of the group.
    wang = Contact(_user_name(), "王五", "friend", sex=1)
    family = Contact(
        _room_name(),
        "家人群 👨‍👩‍👧",
        "group",
        members=(me, mum, zhang, wang),
    )
    news = Contact(
        _user_name(), "腾讯新闻", "mp", verify_flag=MP_VERIFY_FLAG, signature="腾讯新闻官方账号"
    )
    weather = Contact(_user_name(), "中国天气 🌦", "mp", verify_flag=MP_VERIFY_FLAG)
    filehelper = Contact("filehelper", "文件传输助手", "special")
    return Account(
        uin=1_000_000_000 + secrets.randbelow(1_000_000_000),
        user=me,
        contacts=(zhang, li, mum, family, news, weather, filehelper),
    )
