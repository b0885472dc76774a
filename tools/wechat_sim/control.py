"""The control API under ``/_sim/``: the test (or the demo) plays the phone and WeChat's servers.

Every answer is JSON; every refusal is a 4xx with ``{"error": "..."}``. The endpoints are
listed in this package's README.md.
"""

from __future__ import annotations

import base64
import json
from typing import Any, get_args

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .messages import MessageError, MessageKind, MessageType, build_message
from .state import Conflict, Fault, Invalid, Phase, SimState

PHASES: tuple[str, ...] = get_args(Phase)
MAX_WAIT_SECONDS = 120.0


def _state(request: Request) -> SimState:
    state: SimState = request.app.state.sim
    return state


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise Invalid(f"body is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise Invalid("body must be a JSON object")
    return parsed


def _flag(body: dict[str, Any], default: bool) -> bool:
    value = body.get("enabled", default)
    if not isinstance(value, bool):
        raise Invalid("enabled must be true or false")
    return value


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise Invalid(f"{key} must be a string")
    return value


async def _guarded(request: Request, action: Any) -> Response:
    try:
        result: Response = await action(request)
    except Conflict as exc:
        return _error(409, str(exc))
    except (Invalid, MessageError) as exc:
        return _error(400, str(exc))
    return result


def _endpoint(action: Any) -> Any:
    async def endpoint(request: Request) -> Response:
        return await _guarded(request, action)

    endpoint.__name__ = action.__name__
    return endpoint


async def get_state(request: Request) -> Response:
    return JSONResponse(_state(request).view())


async def wait(request: Request) -> Response:
    """Hold until every given condition holds: ``phase``, ``endpoint``+``count``, ``sent``."""
    state = _state(request)
    query = request.query_params
    phase = query.get("phase")
    if phase is not None and phase not in PHASES:
        raise Invalid(f"phase must be one of {', '.join(PHASES)}")
    endpoint = query.get("endpoint")
    try:
        count = int(query.get("count", "1"))
        sent = int(query["sent"]) if "sent" in query else None
        timeout = min(float(query.get("timeout", "5")), MAX_WAIT_SECONDS)
    except ValueError as exc:
        raise Invalid(f"count, sent and timeout must be numbers: {exc}") from exc

    def reached() -> bool | None:
        ok = (
            (phase is None or state.phase == phase)
            and (endpoint is None or state.requests[endpoint] >= count)
            and (sent is None or len(state.sent) >= sent)
        )
        if ok:
            return True
        return False if state.closing else None

    if await state.changes.until(reached, timeout):
        return JSONResponse(state.view())
    return JSONResponse({"error": "timed out", "state": state.view()}, status_code=408)


async def contacts(request: Request) -> Response:
    account = _state(request).account
    return JSONResponse(
        {
            "user": {"user_name": account.user.user_name, "nick_name": account.user.nick_name},
            "contacts": [
                {
                    "user_name": c.user_name,
                    "nick_name": c.nick_name,
                    "kind": c.kind,
                    "members": [
                        {"user_name": m.user_name, "nick_name": m.nick_name} for m in c.members
                    ],
                }
                for c in account.contacts
            ],
        }
    )


async def sent(request: Request) -> Response:
    return JSONResponse({"sent": _state(request).sent})


async def scan(request: Request) -> Response:
    return JSONResponse({"uuid": _state(request).scan()})


async def confirm(request: Request) -> Response:
    return JSONResponse({"uuid": _state(request).confirm()})


async def expire(request: Request) -> Response:
    return JSONResponse({"uuid": _state(request).expire()})


async def refuse(request: Request) -> Response:
    state = _state(request)
    state.refuse_next = _flag(await _body(request), default=True)
    state.changed()
    return JSONResponse({"refuse_next": state.refuse_next})


async def push_login(request: Request) -> Response:
    state = _state(request)
    state.push_login_enabled = _flag(await _body(request), default=True)
    state.changed()
    return JSONResponse({"push_login": state.push_login_enabled})


async def message(request: Request) -> Response:
    state = _state(request)
    body = await _body(request)
    if "raw" in body:
        # Hostile-data hook: the entry goes into AddMsgList exactly as given.
        raw = body["raw"]
        state.deliver(raw)
        msg_id = raw.get("MsgId", "") if isinstance(raw, dict) else ""
        return JSONResponse({"msg_id": str(msg_id)})
    kind: MessageKind = body.get("kind", "friend")
    msg_type: MessageType = body.get("type", "text")
    entry = build_message(
        state.account,
        kind=kind,
        msg_type=msg_type,
        text=_optional_str(body, "text"),
        from_name=_optional_str(body, "from"),
        sender_name=_optional_str(body, "sender"),
    )
    state.deliver(entry)
    return JSONResponse({"msg_id": entry["MsgId"]})


async def fault(request: Request) -> Response:
    """Hostile-data hook: the next ``times`` requests to ``endpoint`` get this answer instead."""
    body = await _body(request)
    endpoint = body.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise Invalid("endpoint must name a protocol endpoint, e.g. 'webwxsync'")
    status, times = body.get("status", 200), body.get("times", 1)
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise Invalid("status must be an HTTP status code")
    if not isinstance(times, int) or times < 1:
        raise Invalid("times must be a positive integer")
    content_type = body.get("content_type", "text/plain; charset=utf-8")
    if not isinstance(content_type, str):
        raise Invalid("content_type must be a string")
    if "body_base64" in body:
        try:
            payload = base64.b64decode(str(body["body_base64"]), validate=True)
        except ValueError as exc:
            raise Invalid(f"body_base64 is not base64: {exc}") from exc
    else:
        text = body.get("body", "")
        if not isinstance(text, str):
            raise Invalid("body must be a string (or use body_base64 for raw bytes)")
        payload = text.encode("utf-8")
    _state(request).add_fault(endpoint, Fault(status, payload, content_type), times)
    return JSONResponse({"endpoint": endpoint, "queued": _state(request).view()["faults"]})


async def end(request: Request) -> Response:
    retcode = (await _body(request)).get("retcode", 1101)
    if not isinstance(retcode, int) or isinstance(retcode, bool):
        raise Invalid("retcode must be an integer such as 1100, 1101 or 1102")
    _state(request).end(retcode)
    return JSONResponse({"retcode": retcode})


async def reset(request: Request) -> Response:
    _state(request).reset()
    return JSONResponse(_state(request).view())


def routes() -> list[BaseRoute]:
    table: list[tuple[str, Any, str]] = [
        ("state", get_state, "GET"),
        ("wait", wait, "GET"),
        ("contacts", contacts, "GET"),
        ("sent", sent, "GET"),
        ("scan", scan, "POST"),
        ("confirm", confirm, "POST"),
        ("expire", expire, "POST"),
        ("refuse", refuse, "POST"),
        ("push_login", push_login, "POST"),
        ("message", message, "POST"),
        ("end", end, "POST"),
        ("fault", fault, "POST"),
        ("reset", reset, "POST"),
    ]
    return [Route(f"/_sim/{name}", _endpoint(fn), methods=[method]) for name, fn, method in table]
