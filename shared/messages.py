"""One model for every received WeChat message, whatever its kind or chat."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

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


class ChatMessage(BaseModel):
    """A received message, normalized: WeChat's HTML escaping and emoji markup undone."""

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
