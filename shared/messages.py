"""One model for every received WeChat message, whatever its kind or chat.

Owned by the login service, which is the only producer; consumers (notifier, gateway,
browsers) read it from ``<ns>:messages`` and from ``message`` events. Fields are only ever
added, optional, so older consumers keep parsing newer entries.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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


def valid_unicode(value: str) -> str:
    """``value`` with every lone surrogate replaced by U+FFFD.

    JSON can escape half a surrogate pair (``"\\ud800"``) and Python decodes it into a str
    that UTF-8 — so Redis, JSON encoders and browsers — cannot carry; a proper pair split in
    two is joined back into its character.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


# Every string of a message: whatever WeChat sent, it can be encoded and stored.
Text = Annotated[str, AfterValidator(valid_unicode)]


class Media(BaseModel):
    """What is known about an attachment without downloading it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file_name: Text | None = None
    size: int | None = None
    url: Text | None = None
    duration_ms: int | None = None
    width: int | None = None
    height: int | None = None


class ContactCard(BaseModel):
    """A person named by a message: a shared contact card, or who asks to be a friend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Text
    name: Text
    alias: Text | None = None
    province: Text | None = None
    city: Text | None = None


# Characters of text a ``message`` event carries at most (far above a chat message's usual
# length; WeChat itself limits a text message to a few thousand characters).
EVENT_TEXT_MAX = 16_384


class ChatMessage(BaseModel):
    """A received message, normalized: WeChat's HTML escaping and emoji markup undone.

    ``text`` is what a person would read: the message for text, system notices and friend
    requests (their greeting), the file name for files, the title for links, the name for
    cards; empty for images, voice and video, whose details are in ``media``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Text = Field(min_length=1, max_length=64)
    chat: ChatKind
    chat_id: Text
    chat_name: Text
    sender_id: Text | None = None
    sender_name: Text | None = None
    type: MessageType
    text: Text
    media: Media | None = None
    created_at: int = Field(description="Unix seconds, from WeChat's CreateTime")
    outgoing: bool = False
    # Additions (all optional):
    card: ContactCard | None = None
    # A group message that mentions the account (``@name``).
    mentioned: bool = False
    # WeChat's MsgType (1 text, 3 image, 49 app message, ...), kept for "other".
    wechat_type: int | None = None
    # Set on a ``message`` event whose text was cut to EVENT_TEXT_MAX characters: the
    # messages stream (GET /api/messages) holds the whole text.
    truncated: bool = False

    def for_event(self) -> ChatMessage:
        """What the ``message`` event carries: this message, its text cut if very long, so
        one huge message is not relayed whole to every open dashboard."""
        if len(self.text) <= EVENT_TEXT_MAX:
            return self
        return self.model_copy(update={"text": self.text[:EVENT_TEXT_MAX], "truncated": True})
