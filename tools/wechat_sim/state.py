"""The simulator's world: one WeChat account, its login codes, web sessions and message queues.

Everything runs on the server's event loop, so no locks: route handlers mutate the state and
call :meth:`SimState.changed`, which wakes every long-polled request to re-check its answer.
Control-API misuse raises :class:`Conflict` (HTTP 409) or :class:`Invalid` (HTTP 400).
"""

from __future__ import annotations

import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from .data import Account, demo_account
from .longpoll import Changes

Phase = Literal["idle", "waiting_scan", "scanned", "logged_in", "ended"]
CodeStatus = Literal["waiting", "scanned", "confirmed", "expired", "used"]

# Retcodes a real synccheck uses to end a session: 1100 logged out on the phone, 1101
# logged in elsewhere / session gone, 1102 session invalid (the 2025 UOS kick).
SESSION_GONE = 1101


class Conflict(Exception):
    """The control request does not fit the current phase (HTTP 409)."""


class Invalid(Exception):
    """The control request is malformed (HTTP 400)."""


@dataclass(frozen=True)
class SimConfig:
    poll_seconds: float = 25.0
    """How long login polls and synccheck are held before their idle answer (408 / selector 0)."""
    contact_page_size: int = 4
    """Entries per webwxgetcontact page; small so that itchat's Seq paging is exercised."""


@dataclass
class LoginCode:
    """One uuid handed to itchat: a QR code (jslogin) or a push-login prompt."""

    uuid: str
    push: bool
    status: CodeStatus = "waiting"
    scan_reported: bool = False
    ticket: str = ""
    refused: bool = False


@dataclass
class Session:
    """One web session, created when itchat fetches the redirect URL."""

    sid: str
    uin: int
    skey: str
    pass_ticket: str
    data_ticket: str
    auth_ticket: str
    uvid: str
    loadtime: str
    alive: bool = True
    end_retcode: int | None = None
    pending: deque[Any] = field(default_factory=deque)
    sync_step: int = 0

    def sync_key(self) -> dict[str, Any]:
        base = 600_000_000 + self.sync_step
        keys = [(1, base), (2, base + 17), (3, base + 5), (11, base + 3), (1000, int(time.time()))]
        return {"Count": len(keys), "List": [{"Key": k, "Val": v} for k, v in keys]}

    def cookies(self) -> dict[str, str]:
        return {
            "wxsid": self.sid,
            "wxuin": str(self.uin),
            "webwx_data_ticket": self.data_ticket,
            "webwxuvid": self.uvid,
            "webwx_auth_ticket": self.auth_ticket,
            "wxloadtime": self.loadtime,
        }


@dataclass(frozen=True)
class Fault:
    """A canned answer that replaces the next real one of a protocol endpoint."""

    status: int
    body: bytes
    content_type: str


class StateView(TypedDict):
    """``GET /_sim/state``."""

    phase: Phase
    uuid: str | None
    qr_codes: list[str]
    push_uuids: list[str]
    logged_in: bool
    uin: int
    user_name: str
    pending_messages: int
    sent_messages: int
    refuse_next: bool
    push_login: bool
    requests: dict[str, int]
    faults: dict[str, int]


def _token(nbytes: int) -> str:
    # URL-safe alphabet: redirect URLs and uuids must never contain "/" (itchat cuts its API
    # base at the last "/") nor "+" (itchat puts the uuid in a query string unencoded).
    return secrets.token_urlsafe(nbytes)


class SimState:
    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.changes = Changes()
        self.closing = False
        self._forget()

    def _forget(self) -> None:
        self.account: Account = demo_account()
        self.phase: Phase = "idle"
        self.codes: dict[str, LoginCode] = {}
        self.current_uuid: str | None = None
        self.qr_codes: list[str] = []
        self.push_uuids: list[str] = []
        self.sessions: dict[str, Session] = {}
        self.refuse_next = False
        self.push_login_enabled = False
        self.sent: list[dict[str, Any]] = []
        self.requests: Counter[str] = Counter()
        self.faults: dict[str, deque[Fault]] = {}

    def changed(self) -> None:
        self.changes.notify()

    def reset(self) -> None:
        # A synccheck held across the reset still holds its Session object: end it explicitly
        # so that it answers "session gone" instead of idling as if nothing happened.
        for session in self.sessions.values():
            session.alive = False
            if session.end_retcode is None:
                session.end_retcode = SESSION_GONE
        self._forget()
        self.changed()

    def close(self) -> None:
        """Release every held request with its idle answer; used on shutdown."""
        self.closing = True
        self.changed()

    def count_request(self, endpoint: str) -> None:
        self.requests[endpoint] += 1
        self.changed()

    # --- login codes -------------------------------------------------------------------

    def _current(self) -> LoginCode | None:
        return self.codes.get(self.current_uuid) if self.current_uuid else None

    def _supersede(self) -> None:
        code = self._current()
        if code is not None and code.status in ("waiting", "scanned"):
            code.status = "expired"

    def issue_qr(self) -> str:
        self._supersede()
        uuid = _token(9)[:10] + "=="
        self.codes[uuid] = LoginCode(uuid=uuid, push=False)
        self.current_uuid = uuid
        self.qr_codes.append(uuid)
        self.phase = "waiting_scan"
        self.changed()
        return uuid

    def issue_push(self, uin: str) -> str | None:
        """A push-login uuid when enabled and ``uin`` is the account's; else None."""
        if not self.push_login_enabled or uin != str(self.account.uin):
            return None
        self._supersede()
        uuid = _token(9)[:10] + "=="
        # The phone shows the prompt at once, so the code starts out as scanned.
        self.codes[uuid] = LoginCode(uuid=uuid, push=True, status="scanned")
        self.current_uuid = uuid
        self.push_uuids.append(uuid)
        self.phase = "scanned"
        self.changed()
        return uuid

    def scan(self) -> str:
        code = self._current()
        if code is None or code.status != "waiting":
            raise Conflict("no QR code is waiting to be scanned")
        code.status = "scanned"
        self.phase = "scanned"
        self.changed()
        return code.uuid

    def confirm(self) -> str:
        code = self._current()
        if code is None or code.status != "scanned":
            raise Conflict("nothing is waiting for confirmation on the phone")
        code.status = "confirmed"
        code.ticket = _token(24)
        code.refused = self.refuse_next
        self.refuse_next = False
        self.changed()
        return code.uuid

    def expire(self) -> str:
        code = self._current()
        if code is None or code.status not in ("waiting", "scanned"):
            raise Conflict("no login code is pending")
        code.status = "expired"
        self.phase = "idle"
        self.changed()
        return code.uuid

    def login_answer(self, uuid: str, *, timed_out: bool) -> tuple[int, str] | None:
        """(window.code, ticket) for a login poll, or None to keep holding it."""
        code = self.codes.get(uuid)
        if code is None or code.status in ("expired", "used"):
            return 400, ""
        if code.status == "confirmed":
            return 200, code.ticket
        if code.status == "scanned":
            if not code.scan_reported:
                code.scan_reported = True
                return 201, ""
            # Still waiting for the phone: repeat 201 at the deadline, as itchat expects
            # (it logs "press confirm" only on the first one).
            return (201, "") if timed_out or self.closing else None
        return (408, "") if timed_out or self.closing else None

    # --- sessions ----------------------------------------------------------------------

    def redeem(self, ticket: str, uuid: str) -> Session | int:
        """The new session for a confirmed code's ticket, or the error ``ret`` to answer."""
        code = self.codes.get(uuid)
        if code is None or code.status != "confirmed" or not ticket or code.ticket != ticket:
            return 1
        code.status = "used"
        if code.refused:
            self.phase = "idle"
            self.changed()
            return 1203
        for old in self.sessions.values():
            if old.alive:
                # A new web login pushes the previous one out, as WeChat does.
                old.alive = False
                old.end_retcode = SESSION_GONE
        session = Session(
            sid=_token(12),
            uin=self.account.uin,
            skey="@crypt_" + secrets.token_hex(4) + "_" + secrets.token_hex(16),
            pass_ticket=_token(48),
            data_ticket=_token(48),
            auth_ticket=_token(96),
            uvid=secrets.token_hex(16),
            loadtime=str(int(time.time())),
        )
        self.sessions[session.sid] = session
        self.phase = "logged_in"
        self.changed()
        return session

    def find_session(self, sid: str, uin: str, skey: str) -> Session | None:
        """The session these credentials name, alive or not; None if they name none.

        itchat-uos sends an empty skey (it reads the cookies, not the XML), older itchat
        sends the real one: both are accepted, a wrong one is not.
        """
        session = self.sessions.get(sid)
        if session is None or str(session.uin) != uin:
            return None
        if skey and skey != session.skey:
            return None
        return session

    def live(self) -> Session | None:
        for session in self.sessions.values():
            if session.alive:
                return session
        return None

    def deliver(self, entry: Any) -> None:
        session = self.live()
        if session is None:
            raise Conflict("no logged-in session to deliver to")
        session.pending.append(entry)
        self.changed()

    def drain(self, session: Session) -> list[Any]:
        messages = list(session.pending)
        session.pending.clear()
        session.sync_step += 1
        self.changed()
        return messages

    def end(self, retcode: int) -> None:
        if retcode == 0:
            raise Invalid("retcode 0 means 'fine'; an ending needs another (1100, 1101, 1102)")
        session = self.live()
        if session is None:
            raise Conflict("no logged-in session to end")
        session.alive = False
        session.end_retcode = retcode
        self.phase = "ended"
        self.changed()

    def logout(self, session: Session) -> None:
        if session.alive:
            session.alive = False
            session.end_retcode = SESSION_GONE
            self.phase = "ended"
        self.changed()

    def sync_answer(self, session: Session | None, *, timed_out: bool) -> tuple[int, int] | None:
        """(retcode, selector) for a synccheck, or None to keep holding it."""
        if session is None:
            return SESSION_GONE, 0
        if session.end_retcode is not None:
            return session.end_retcode, 0
        if not session.alive:
            return SESSION_GONE, 0
        if session.pending:
            return 0, 2
        return (0, 0) if timed_out or self.closing else None

    # --- injected faults (hostile-data hook) -------------------------------------------

    def add_fault(self, endpoint: str, fault: Fault, times: int) -> None:
        self.faults.setdefault(endpoint, deque()).extend([fault] * times)
        self.changed()

    def take_fault(self, endpoint: str) -> Fault | None:
        queued = self.faults.get(endpoint)
        if not queued:
            return None
        fault = queued.popleft()
        if not queued:
            del self.faults[endpoint]
        return fault

    # --- observation -------------------------------------------------------------------

    def record_sent(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        self.changed()

    def view(self) -> StateView:
        live = self.live()
        return {
            "phase": self.phase,
            "uuid": self.current_uuid,
            "qr_codes": list(self.qr_codes),
            "push_uuids": list(self.push_uuids),
            "logged_in": live is not None,
            "uin": self.account.uin,
            "user_name": self.account.user.user_name,
            "pending_messages": len(live.pending) if live else 0,
            "sent_messages": len(self.sent),
            "refuse_next": self.refuse_next,
            "push_login": self.push_login_enabled,
            "requests": dict(self.requests),
            "faults": {endpoint: len(queued) for endpoint, queued in self.faults.items()},
        }
