"""The WeChat web-protocol endpoints, shaped the way itchat-uos 1.4.1 reads them.

See /work/shared/wechat-web-protocol.md. Everything after login lives under
``/cgi-bin/mmwebwx-bin/``: itchat derives its API base by cutting the redirect URL at its last
``/``, so the redirect must live in that directory and carry no ``/`` in its query.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from .media import FILE_BODY, VIDEO_MP4, VOICE_MP3, avatar_data_url, avatar_png, picture_png
from .messages import new_msg_id
from .state import SESSION_GONE, Session, SimState

API_DIR = "/cgi-bin/mmwebwx-bin"
JS = "text/javascript; charset=utf-8"

# WeChat's own wording for the refusals, as real accounts see it.
REFUSED_MESSAGE = (
    "为了你的帐号安全，此微信号不能登录网页微信。你可以使用Windows微信或Mac微信在电脑端登录。"
)
BAD_TICKET_MESSAGE = "登录失败，请重新扫码"

logger = logging.getLogger("wechat_sim")


def _state(request: Request) -> SimState:
    state: SimState = request.app.state.sim
    return state


def _json(payload: Any) -> Response:
    # Compact UTF-8 JSON, emoji unescaped: the bytes itchat decodes are the bytes WeChat sends.
    try:
        return JSONResponse(payload)
    except UnicodeEncodeError:
        # A raw entry (hostile-data hook) holding a lone surrogate, which UTF-8 cannot carry:
        # send it as a JSON escape (``\ud800``) instead of failing the answer and losing the
        # drained queue.
        body = json.dumps(payload, separators=(",", ":"))
        return Response(body, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    """The JSON body itchat posts without a Content-Type; {} when it is not a JSON object."""
    raw = await request.body()
    try:
        parsed = json.loads(raw.decode("utf-8", "replace")) if raw else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _session(request: Request, body: dict[str, Any] | None = None) -> Session | None:
    """The session named by BaseRequest, else the query string, else the cookies."""
    base = (body or {}).get("BaseRequest")
    base = base if isinstance(base, dict) else {}
    query, cookies = request.query_params, request.cookies
    sid = str(base.get("Sid") or query.get("sid") or cookies.get("wxsid") or "")
    uin = str(base.get("Uin") or query.get("uin") or cookies.get("wxuin") or "")
    skey = str(base.get("Skey") or query.get("skey") or "")
    return _state(request).find_session(sid, uin, skey)


def _live(request: Request, body: dict[str, Any] | None = None) -> Session | None:
    session = _session(request, body)
    return session if session is not None and session.alive else None


def _base_response(ret: int = 0) -> dict[str, Any]:
    return {"Ret": ret, "ErrMsg": ""}


def _gone() -> Response:
    return _json({"BaseResponse": _base_response(SESSION_GONE)})


async def root(request: Request) -> Response:
    return PlainTextResponse("wechat-sim: WeChat web-protocol simulator\n")


async def jslogin(request: Request) -> Response:
    uuid = _state(request).issue_qr()
    return PlainTextResponse(
        f'window.QRLogin.code = 200; window.QRLogin.uuid = "{uuid}";', media_type=JS
    )


def _redirect_uri(request: Request, uuid: str, ticket: str) -> str:
    base = str(request.base_url).rstrip("/")
    return (
        f"{base}{API_DIR}/webwxnewloginpage?ticket={ticket}&uuid={uuid}"
        f"&lang=zh_CN&scan={int(time.time())}&fun=new&version=v2"
    )


async def login_poll(request: Request) -> Response:
    state = _state(request)
    uuid = request.query_params.get("uuid", "")
    answer = await state.changes.until(
        lambda: state.login_answer(uuid, timed_out=False), state.config.poll_seconds
    )
    code, ticket = answer or state.login_answer(uuid, timed_out=True) or (408, "")
    if code == 200:
        base = str(request.base_url)
        if "qq.com" in base or "wechat.com" in base:
            # itchat would send sync traffic to WeChat's real webpush hosts: refuse loudly.
            logger.error("simulator host %s would make itchat talk to real WeChat", base)
            return PlainTextResponse("simulator host must not contain qq.com/wechat.com", 500)
        body = f'window.code=200;\nwindow.redirect_uri="{_redirect_uri(request, uuid, ticket)}";'
    elif code == 201:
        body = f"window.code=201;window.userAvatar = '{avatar_data_url()}';"
    else:
        body = f"window.code={code};"
    return PlainTextResponse(body, media_type=JS)


async def new_login_page(request: Request) -> Response:
    state = _state(request)
    result = state.redeem(
        request.query_params.get("ticket", ""), request.query_params.get("uuid", "")
    )
    if not isinstance(result, Session):
        message = REFUSED_MESSAGE if result == 1203 else BAD_TICKET_MESSAGE
        # No cookies at all: itchat-uos then fails with KeyError('wxsid').
        return PlainTextResponse(
            f"<error><ret>{result}</ret><message>{message}</message></error>",
            media_type="text/plain; charset=utf-8",
        )
    xml = (
        "<error><ret>0</ret><message></message>"
        f"<skey>{result.skey}</skey><wxsid>{result.sid}</wxsid><wxuin>{result.uin}</wxuin>"
        f"<pass_ticket>{result.pass_ticket}</pass_ticket><isgrayscale>1</isgrayscale></error>"
    )
    response = PlainTextResponse(xml, media_type="text/plain; charset=utf-8")
    for name, value in result.cookies().items():
        # No Domain and no Secure: the cookie jar must send these back over plain http.
        response.set_cookie(name, value, path="/", secure=False, httponly=False)
    return response


async def webwxinit(request: Request) -> Response:
    body = await _body(request)
    session = _live(request, body)
    if session is None:
        return _gone()
    state = _state(request)
    account = state.account
    recent = [c for c in account.contacts if c.kind in ("group", "friend", "special")][:4]
    recent += account.of_kind("mp")[:1]
    return _json(
        {
            "BaseResponse": _base_response(),
            "Count": len(recent),
            "ContactList": [c.wire() for c in recent],
            "SyncKey": session.sync_key(),
            "User": account.user_wire(),
            "ChatSet": ",".join(c.user_name for c in recent),
            "SKey": session.skey,
            "ClientVersion": 369302288,
            "SystemTime": int(time.time()),
            "GrayScale": 1,
            "InviteStartCount": 40,
            "MPSubscribeMsgCount": 0,
            "MPSubscribeMsgList": [],
            "ClickReportInterval": 600000,
        }
    )


async def status_notify(request: Request) -> Response:
    if _live(request, await _body(request)) is None:
        return _gone()
    return _json({"BaseResponse": _base_response(), "MsgID": new_msg_id()})


async def get_contact(request: Request) -> Response:
    if _live(request) is None:
        return _json(
            {
                "BaseResponse": _base_response(SESSION_GONE),
                "MemberCount": 0,
                "MemberList": [],
                "Seq": 0,
            }
        )
    state = _state(request)
    try:
        start = max(0, int(request.query_params.get("seq", "0")))
    except ValueError:
        start = 0
    everyone = [c.wire() for c in state.account.contacts]
    size = state.config.contact_page_size
    page = everyone[start : start + size]
    following = start + size if start + size < len(everyone) else 0
    return _json(
        {
            "BaseResponse": _base_response(),
            "MemberCount": len(page),
            "MemberList": page,
            "Seq": following,
        }
    )


async def batch_get_contact(request: Request) -> Response:
    body = await _body(request)
    if _live(request, body) is None:
        return _gone()
    account = _state(request).account
    listed = body.get("List")
    wanted: list[Any] = listed if isinstance(listed, list) else []
    found = []
    for item in wanted:
        name = item.get("UserName") if isinstance(item, dict) else None
        contact = account.by_user_name(name) if isinstance(name, str) else None
        if contact is not None:
            found.append(contact.wire())
    return _json({"BaseResponse": _base_response(), "Count": len(found), "ContactList": found})


async def synccheck(request: Request) -> Response:
    state = _state(request)
    session = _session(request)
    answer = await state.changes.until(
        lambda: state.sync_answer(session, timed_out=False), state.config.poll_seconds
    )
    retcode, selector = answer or state.sync_answer(session, timed_out=True) or (0, 0)
    return PlainTextResponse(
        f'window.synccheck={{retcode:"{retcode}",selector:"{selector}"}}', media_type=JS
    )


async def webwxsync(request: Request) -> Response:
    body = await _body(request)
    session = _live(request, body)
    if session is None:
        return _json(
            {
                "BaseResponse": _base_response(SESSION_GONE),
                "AddMsgCount": 0,
                "AddMsgList": [],
                "ModContactCount": 0,
                "ModContactList": [],
            }
        )
    messages = _state(request).drain(session)
    key = session.sync_key()
    return _json(
        {
            "BaseResponse": _base_response(),
            "AddMsgCount": len(messages),
            "AddMsgList": messages,
            "ModContactCount": 0,
            "ModContactList": [],
            "DelContactCount": 0,
            "DelContactList": [],
            "ModChatRoomMemberCount": 0,
            "ModChatRoomMemberList": [],
            "Profile": {"BitFlag": 0},
            "ContinueFlag": 0,
            # itchat-uos sends SyncKey back, itchat 1.3.10 SyncCheckKey: keep them equal.
            "SyncKey": key,
            "SyncCheckKey": key,
            "SKey": session.skey,
        }
    )


async def send_msg(request: Request) -> Response:
    body = await _body(request)
    if _live(request, body) is None:
        return _gone()
    given = body.get("Msg")
    msg: dict[str, Any] = given if isinstance(given, dict) else {}
    msg_id = new_msg_id()
    local_id = str(msg.get("LocalID", ""))
    _state(request).record_sent(
        {
            "msg_id": msg_id,
            "local_id": local_id,
            "type": msg.get("Type"),
            "content": msg.get("Content"),
            "from": msg.get("FromUserName"),
            "to": msg.get("ToUserName"),
            "time": time.time(),
        }
    )
    return _json({"BaseResponse": _base_response(), "MsgID": msg_id, "LocalID": local_id})


async def logout(request: Request) -> Response:
    session = _session(request)
    if session is not None:
        _state(request).logout(session)
    return PlainTextResponse("", media_type="text/html")


async def push_login_url(request: Request) -> Response:
    uuid = _state(request).issue_push(request.query_params.get("uin", ""))
    if uuid is None:
        return _json({"ret": "1", "msg": "param error"})
    return _json({"ret": "0", "msg": "all ok", "uuid": uuid})


def _media(content: bytes, media_type: str) -> Response:
    return Response(content, media_type=media_type)


async def head_image(request: Request) -> Response:
    if _live(request) is None:
        return Response(b"", status_code=401)
    return _media(avatar_png(), "image/png")


async def msg_image(request: Request) -> Response:
    if _live(request) is None:
        return Response(b"", status_code=401)
    return _media(picture_png(), "image/png")


async def voice(request: Request) -> Response:
    if _live(request) is None:
        return Response(b"", status_code=401)
    return _media(VOICE_MP3, "audio/mpeg")


async def video(request: Request) -> Response:
    if _live(request) is None:
        return Response(b"", status_code=401)
    return _media(VIDEO_MP4, "video/mp4")


async def media_file(request: Request) -> Response:
    # itchat passes the data ticket in the query and the rest in cookies.
    session = _live(request)
    if session is None or request.query_params.get("webwx_data_ticket") != session.data_ticket:
        return Response(b"", status_code=401)
    return _media(FILE_BODY, "application/octet-stream")


def routes() -> list[BaseRoute]:
    api: list[tuple[str, Any, list[str]]] = [
        ("login", login_poll, ["GET"]),
        ("webwxnewloginpage", new_login_page, ["GET"]),
        ("webwxinit", webwxinit, ["POST"]),
        ("webwxstatusnotify", status_notify, ["POST"]),
        ("webwxgetcontact", get_contact, ["GET", "POST"]),
        ("webwxbatchgetcontact", batch_get_contact, ["POST"]),
        ("synccheck", synccheck, ["GET"]),
        ("webwxsync", webwxsync, ["POST"]),
        ("webwxsendmsg", send_msg, ["POST"]),
        ("webwxlogout", logout, ["GET", "POST"]),
        ("webwxpushloginurl", push_login_url, ["GET"]),
        ("webwxgeticon", head_image, ["GET"]),
        ("webwxgetheadimg", head_image, ["GET"]),
        ("webwxgetmsgimg", msg_image, ["GET"]),
        ("webwxgetvoice", voice, ["GET"]),
        ("webwxgetvideo", video, ["GET"]),
        ("webwxgetmedia", media_file, ["GET"]),
    ]
    return [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/jslogin", jslogin, methods=["GET"]),
        *(Route(f"{API_DIR}/{name}", handler, methods=methods) for name, handler, methods in api),
    ]
