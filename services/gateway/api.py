"""The REST API: sign-in, the account's state, recent messages, and commands to the workers.

Commands are appended to ``<ns>:commands``; the gateway never calls another service.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from shared.commands import Command, CommandName
from shared.messages import ChatMessage
from shared.streams import MalformedEntry, decode, encode, parse_stream_id, xrevrange

from . import metrics
from .auth import COOKIE, Session
from .deps import CurrentSession, Gateway, client_addr, get_gateway

log = logging.getLogger("wxstream.gateway.api")

router = APIRouter(prefix="/api")
COMMANDS_MAXLEN = 10_000


class Credentials(BaseModel):
    secret: str = Field(min_length=1, max_length=1024)


class SessionInfo(BaseModel):
    authenticated: bool
    expires_at: int | None = None


class TokenOut(BaseModel):
    token: str
    expires_at: int
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a scheme name)


class StateOut(BaseModel):
    logged_in: bool
    login: dict[str, object] | None = Field(description="The latest `login` event's data")
    login_id: str | None
    unread: int
    notification_id: str | None


class MessageItem(BaseModel):
    id: str = Field(description="The entry id in the messages stream")
    message: ChatMessage


class MessagePage(BaseModel):
    items: list[MessageItem]
    next_before: str | None = Field(description="Pass as `before` for the next (older) page")


class ConfigOut(BaseModel):
    account: str
    demo_phone_url: str | None = Field(
        description="The simulator's phone page, when the gateway runs in demo mode"
    )


class CommandAccepted(BaseModel):
    command: CommandName
    id: str


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def _check_sign_in(request: Request, gateway: Gateway, credentials: Credentials) -> int:
    addr = client_addr(request)
    wait = gateway.limiter.retry_after(addr)
    if wait:
        metrics.REJECTED.labels("sign_in_rate_limited").inc()
        raise HTTPException(
            429, "too many failed sign-ins; try again later", {"Retry-After": str(wait)}
        )
    if not gateway.auth.check_secret(credentials.secret):
        gateway.limiter.failed(addr)
        metrics.REJECTED.labels("wrong_secret").inc()
        log.warning("sign_in_failed", extra={"addr": addr})
        raise HTTPException(401, "wrong secret")
    gateway.limiter.succeeded(addr)
    return 0


@router.post("/session", response_model=SessionInfo, summary="Sign in (sets the session cookie)")
async def sign_in(
    credentials: Credentials, request: Request, response: Response, gateway: GatewayDep
) -> SessionInfo:
    gateway.check_origin(request)
    _check_sign_in(request, gateway, credentials)
    token, expires = gateway.auth.issue()
    response.set_cookie(
        COOKIE,
        token,
        max_age=gateway.auth.ttl,
        httponly=True,
        samesite="strict",
        secure=gateway.cookie_secure(request),
        path="/",
    )
    log.info("signed_in", extra={"addr": client_addr(request)})
    return SessionInfo(authenticated=True, expires_at=expires)


@router.post(
    "/token", response_model=TokenOut, summary="Exchange the admin secret for a bearer token"
)
async def token(credentials: Credentials, request: Request, gateway: GatewayDep) -> TokenOut:
    _check_sign_in(request, gateway, credentials)
    value, expires = gateway.auth.issue()
    return TokenOut(token=value, expires_at=expires)


@router.get("/session", response_model=SessionInfo, summary="Who am I")
async def session_info(session: CurrentSession) -> SessionInfo:
    return SessionInfo(authenticated=True, expires_at=session.expires_at)


@router.delete("/session", status_code=204, summary="Sign out (clears the cookie)")
async def sign_out(session: CurrentSession, request: Request, gateway: GatewayDep) -> Response:
    response = Response(status_code=204)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=gateway.cookie_secure(request)
    )
    return response


@router.get("/config", response_model=ConfigOut, summary="What the dashboard needs to know")
async def config(session: CurrentSession, gateway: GatewayDep) -> ConfigOut:
    control = gateway.settings.sim_control_url
    return ConfigOut(
        account=gateway.settings.account,
        demo_phone_url=f"{control.rstrip('/')}/phone" if control else None,
    )


@router.get("/state", response_model=StateOut, summary="Login state, user and unread count")
async def state(session: CurrentSession, gateway: GatewayDep) -> StateOut:
    login = gateway.hub.latest.get("login")
    notification = gateway.hub.latest.get("notification")
    login_data: dict[str, object] | None = json.loads(login.data) if login else None
    unread = 0
    if notification is not None:
        count = json.loads(notification.data).get("count")
        unread = count if isinstance(count, int) else 0
    return StateOut(
        logged_in=bool(login_data and login_data.get("type") == "logged_in"),
        login=login_data,
        login_id=login.id if login else None,
        unread=unread,
        notification_id=notification.id if notification else None,
    )


@router.get("/messages", response_model=MessagePage, summary="Recent messages, newest first")
async def messages(
    session: CurrentSession,
    gateway: GatewayDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[
        str | None, Query(max_length=41, description="Entry id: return older messages only")
    ] = None,
) -> MessagePage:
    end = "+"
    if before is not None:
        try:
            parse_stream_id(before)
        except ValueError:
            raise HTTPException(400, "before must be a stream id like 1700000000000-0") from None
        end = f"({before}"
    try:
        entries = await xrevrange(gateway.redis, gateway.keys.messages, end, count=limit)
    except RedisError:
        raise HTTPException(503, "Redis unreachable", {"Retry-After": "2"}) from None
    items: list[MessageItem] = []
    for entry_id, fields in entries:
        try:
            entry = decode(entry_id, fields)
            items.append(
                MessageItem(id=entry.id, message=ChatMessage.model_validate_json(entry.data))
            )
        except (MalformedEntry, ValueError):
            log.warning("malformed_message_entry", extra={"entry_id": entry_id})
    next_before = entries[-1][0] if len(entries) == limit else None
    return MessagePage(items=items, next_before=next_before)


async def _command(gateway: Gateway, name: CommandName) -> CommandAccepted:
    try:
        entry_id = await gateway.redis.xadd(
            gateway.keys.commands,
            encode(name, Command(origin="api")),  # type: ignore[arg-type]
            maxlen=COMMANDS_MAXLEN,
            approximate=True,
        )
    except RedisError:
        raise HTTPException(
            503, "Redis unreachable; the command was not sent", {"Retry-After": "2"}
        ) from None
    log.info("command_sent", extra={"command": name, "entry_id": entry_id})
    return CommandAccepted(command=name, id=str(entry_id))


@router.post(
    "/logout", status_code=202, response_model=CommandAccepted, summary="Log out of WeChat"
)
async def logout(session: CurrentSession, gateway: GatewayDep) -> CommandAccepted:
    return await _command(gateway, "logout")


@router.post(
    "/relogin", status_code=202, response_model=CommandAccepted, summary="Offer a fresh QR code"
)
async def relogin(session: CurrentSession, gateway: GatewayDep) -> CommandAccepted:
    return await _command(gateway, "relogin")


@router.post(
    "/notifications/read", status_code=202, response_model=CommandAccepted, summary="Mark all read"
)
async def mark_read(session: CurrentSession, gateway: GatewayDep) -> CommandAccepted:
    return await _command(gateway, "mark_read")


__all__ = ["Session", "router"]
