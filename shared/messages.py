"""One model for every received WeChat message, whatever its kind or chat.

Owned by the login service, which is the only producer; consumers (notifier, gateway,
browsers) read it from ``<ns>:messages`` and from ``message`` events. Fields are only ever
added, optional, so older consumers keep parsing newer entries.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# "self": the account's own chat (file helper, or itself); "system": WeChat's own
# notices that belong to no chat (friend requests arrive from "fmessage").
ChatKind = Literal["friend", "group", "mp", "self", "system"]
MessageType = Literal[
    "text",
    "image",
    "voice",
    "video",
    "file",
    "link",
    "card",
    "friend_request",
    "map",
    "system",
    "other",
]


class Media(BaseModel):
    """What is known about an attachment without downloading it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file_name: str | None = None
    size: int | None = None
    url: str | None = None
    duration_ms: int | None = None
    width: int | None = None
    height: int | None = None


class ContactCard(BaseModel):
    """A person named by a message: a shared contact card, or who asks to be a friend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str
    name: str
    alias: str | None = None
    province: str | None = None
    city: str | None = None


class ChatMessage(BaseModel):
    """A received message, normalized: WeChat's HTML escaping and emoji markup undone.

    ``text`` is what a person would read: the message for text, system notices and friend
    requests (their greeting), the file name for files, the title for links, the name for
    cards; empty for images, voice and video, whose details are in ``media``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64)
    chat: ChatKind
    chat_id: str
    chat_name: str
    sender_id: str | None = None
    sender_name: str | None = None
    type: MessageType
    text: str
    media: Media | None = None
    created_at: int = Field(description="Unix seconds, from WeChat's CreateTime")
    outgoing: bool = False
    # Additions (all optional):
    card: ContactCard | None = None
    # A group message that mentions the account (``@name``).
    mentioned: bool = False
    # WeChat's MsgType (1 text, 3 image, 49 app message, ...), kept for "other".
    wechat_type: int | None = None
