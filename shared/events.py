"""The browser-facing event contract: every SSE ``event:`` name and its ``data:`` model.

The first rows are wechat-admin's contract, kept field for field (``login`` with
``scan_qr_code | confirm_login | logged_in | logged_out``, ``notification`` with ``count``).
Everything else is an addition: new ``type`` values (``login_error``) or new event names
(``message``, ``reset``), never a change to those rows.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.messages import ChatMessage


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class User(_Event):
    id: str
    name: str
    avatar: str | None = None


class ScanQrCode(_Event):
    """A QR code to scan: ``extra`` is the PNG, base64-encoded (no data-URL prefix)."""

    type: Literal["scan_qr_code"] = "scan_qr_code"
    uuid: str
    extra: str


class ConfirmLogin(_Event):
    """Scanned; waiting for the confirmation on the phone. ``extra`` is the avatar data URL."""

    type: Literal["confirm_login"] = "confirm_login"
    uuid: str
    extra: str | None = None


class LoggedIn(_Event):
    type: Literal["logged_in"] = "logged_in"
    user: User
    # How the session started: a QR scan, a hot reload of the saved session, a push login.
    via: Literal["qr", "hot_reload", "push"] | None = None


LogoutReason = Literal[
    "phone_logout",  # synccheck retcode 1100
    "elsewhere",  # 1101: logged in on another web client
    "invalid_session",  # 1102
    "command",  # our own logout command
    "errors",  # too many failed requests in a row
    "unknown",
]


class LoggedOut(_Event):
    type: Literal["logged_out"] = "logged_out"
    uuid: str | None = None
    reason: LogoutReason | None = None
    retcode: str | None = None


LoginErrorReason = Literal[
    "refused",
    "unreachable",
    "protocol",
    "qr_timeout",  # no scan after the configured number of QR codes; waits for `relogin`
]


class LoginError(_Event):
    """WeChat refused the account (ret 1203), could not be reached, or answered nonsense."""

    type: Literal["login_error"] = "login_error"
    reason: LoginErrorReason
    message: str
    retry_in: float | None = None


LoginData = Annotated[
    ScanQrCode | ConfirmLogin | LoggedIn | LoggedOut | LoginError,
    Field(discriminator="type"),
]


class Notification(_Event):
    count: int = Field(ge=0)


class Reset(_Event):
    """The client's place in the stream is gone: drop what you have, the state follows."""

    reason: Literal["trimmed", "stream_lost", "unknown_id"]


LOGIN: Final = "login"
NOTIFICATION: Final = "notification"
MESSAGE: Final = "message"
RESET: Final = "reset"

EventName = Literal["login", "notification", "message", "reset"]
EventData = ScanQrCode | ConfirmLogin | LoggedIn | LoggedOut | LoginError | Notification
EventPayload = EventData | ChatMessage | Reset

_ADAPTERS: Final[dict[str, TypeAdapter[EventPayload]]] = {
    LOGIN: TypeAdapter(LoginData),
    NOTIFICATION: TypeAdapter(Notification),
    MESSAGE: TypeAdapter(ChatMessage),
    RESET: TypeAdapter(Reset),
}


def event_name(payload: EventPayload) -> EventName:
    """The SSE event name a payload travels under."""
    if isinstance(payload, Notification):
        return "notification"
    if isinstance(payload, ChatMessage):
        return "message"
    if isinstance(payload, Reset):
        return "reset"
    return "login"


def parse_event(name: str, data: str | bytes) -> EventPayload:
    """Validate one event's JSON against the contract; raises ``ValueError`` on anything else."""
    adapter = _ADAPTERS.get(name)
    if adapter is None:
        raise ValueError(f"unknown event name {name!r}")
    return adapter.validate_json(data)
