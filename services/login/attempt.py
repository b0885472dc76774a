"""One login attempt: a fresh itchat ``Core`` driven through ``auto_login`` on its own thread.

A new Core per attempt keeps every attempt's state apart (itchat leaves ``isLogging`` set
after an aborted login, and an abandoned long poll may still be in flight): an attempt that
is cancelled simply stops — its gate refuses any further request and its callbacks raise —
while the next one starts at once on a clean Core. Only one attempt is ever current; the
driver ignores whatever a superseded one still reports.

Every login step is published from itchat's callbacks as it happens: ``scan_qr_code`` for
each new QR (status '0'), ``confirm_login`` when the phone has scanned (201, with the
avatar WeChat sent) or when a push login waits on the phone, and ``logged_in`` on every path
(QR, push, hot reload) from ``loginCallback``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal
from urllib.parse import urlsplit

import requests

from services.login import metrics
from services.login.lease import LeaseState
from services.login.media import MediaSaver
from services.login.normalize import Me, name_text
from services.login.publisher import Fenced, Publisher, with_retry
from services.login.pump import BATCH_END, MessagePump
from services.login.session_file import SessionFile
from services.login.settings import LoginSettings
from services.login.wechat_http import GateClosed, WireWatch, instrument
from shared.events import ConfirmLogin, LoggedIn, LoginData, LogoutReason, ScanQrCode, User

log = logging.getLogger(__name__)

Outcome = Literal["logged_in", "cancelled", "unreachable", "refused", "protocol", "qr_limit"]
Via = Literal["qr", "hot_reload", "push"]

SYNC_RETCODES: dict[str, LogoutReason] = {
    "1100": "phone_logout",
    "1101": "elsewhere",
    "1102": "invalid_session",
}
MAX_AVATAR_BYTES = 256 * 1024


class AttemptCancelled(Exception):
    """Raised inside itchat's callbacks to abort ``auto_login`` (it has no cancel API)."""


class QrLimitReached(Exception):
    """Too many QR codes went unscanned: stop showing new ones until asked."""


class Unreachable(Exception):
    pass


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    generation: int
    outcome: Outcome
    message: str = ""


@dataclass(frozen=True, slots=True)
class LoggedInNow:
    generation: int
    via: Via


@dataclass(frozen=True, slots=True)
class SessionEnded:
    generation: int
    reason: LogoutReason
    retcode: str | None


def uuid_hash(uuid: str | None) -> str | None:
    """What the logs carry instead of a login uuid."""
    return hashlib.sha256(uuid.encode()).hexdigest()[:10] if uuid else None


def logout_reason(last_sync: str | None) -> tuple[LogoutReason, str | None]:
    """Why itchat's receive loop ended, from the last synccheck answer it got."""
    if last_sync in SYNC_RETCODES:
        return SYNC_RETCODES[last_sync], last_sync
    if last_sync in (None, "0", "http_error"):
        # The last synccheck was fine (or failed at HTTP level): the loop gave up after
        # repeated failed requests.
        return "errors", None
    if last_sync == "unparseable":
        return "unknown", None
    return "unknown", last_sync


def _sniff_image(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"GIF8"):
        return "image/gif"
    return "image/jpeg"


class LoginAttempt:
    def __init__(
        self,
        *,
        generation: int,
        itchat: ModuleType,
        settings: LoginSettings,
        session: SessionFile,
        hot_reload: bool,
        lease: LeaseState,
        lease_value: str,
        publisher: Publisher,
        report: Callable[[object], None],
    ) -> None:
        self.generation = generation
        self.settings = settings
        self.session = session
        self.hot_reload = hot_reload
        self.lease = lease
        self.lease_value = lease_value
        self.publisher = publisher
        self.report = report
        self._itchat = itchat
        self.core: Any = itchat.new_instance()
        self.base_url: str = itchat.config.BASE_URL
        self.watch = WireWatch()
        instrument(
            self.core.s,
            self.watch,
            self._gate,
            (settings.http_connect_timeout_seconds, settings.http_read_timeout_seconds),
        )
        self.cancelled = threading.Event()
        self.me: Me | None = None
        self.uuid: str | None = None
        self.via: Via | None = None
        self.qr_count = 0
        self._push_uuids: set[str] = set()
        self._confirmed: set[str] = set()
        self._progress_at = time.monotonic()
        # Set once auto_login has returned (logged_in reported, session file written): on a
        # hot reload itchat starts receiving before it calls loginCallback, and after a QR
        # login it writes the session file after receiving started. A session that dies at
        # once must be reported ended after it was reported logged in, and its file deleted
        # after it was written.
        self._login_done = threading.Event()
        media = MediaSaver(settings.media_dir) if settings.download_media else None
        self.pump = MessagePump(
            self.core.msgList,
            lambda: self.me,
            publisher,
            media=media,
            on_fenced=self.cancel,
            generation=generation,
            contact=self._contact,
        )
        self._thread = threading.Thread(target=self._run, name=f"login-{generation}", daemon=True)

    # --- control (driver thread) ---------------------------------------------------------

    def start(self) -> None:
        self.pump.start()
        self._thread.start()

    @property
    def last_progress(self) -> float:
        return max(self.watch.progress_at, self._progress_at)

    @property
    def logged_in(self) -> bool:
        return self.me is not None and not self.cancelled.is_set()

    def cancel(self) -> None:
        """Stop locally: no further request to WeChat, the receive loop ends. WeChat is not told."""
        self.cancelled.set()
        self.core.alive = False

    def abandon(self) -> None:
        """The lease is gone: stop at once, publish nothing more, save nothing."""
        self.cancel()
        self.pump.abort()

    def wait_login_done(self, timeout: float) -> bool:
        """Wait until auto_login has returned (after a QR login: the session file is written)."""
        return self._login_done.wait(timeout)

    def forget(self) -> None:
        """Drop itchat's module-level reference to this Core (it keeps every instance)."""
        with contextlib.suppress(ValueError):
            self._itchat.instanceList.remove(self.core)

    def logout_remote(self, drain_timeout: float) -> None:
        """Tell WeChat (webwxlogout), then stop; queued messages are still stored."""
        try:
            self.core.logout()
        except Exception as exc:
            log.warning("wechat_logout_failed", extra={"error": type(exc).__name__})
        self.cancel()
        self.pump.finish(drain_timeout)

    def save_and_stop(self, drain_timeout: float) -> None:
        """Shutdown: save the session for the next start, stop without telling WeChat."""
        was_logged_in = self.logged_in
        # Close the gate first so no new sync moves the session past what gets saved; the
        # receive loop keeps its cookies until it notices ``alive`` is False.
        self.cancelled.set()
        if was_logged_in and self.hot_reload:
            try:
                self.core.dump_login_status(str(self.session.path))
                self.session.secure()
                log.info("session_saved")
            except Exception as exc:
                log.error("session_save_failed", extra={"error": type(exc).__name__})
        self.core.alive = False
        self.pump.finish(drain_timeout)

    # --- the attempt (its own thread) ----------------------------------------------------

    def _gate(self, request: requests.PreparedRequest) -> None:
        if self.cancelled.is_set():
            raise GateClosed("this login attempt was stopped")
        if self.lease.value() != self.lease_value and not self.lease.wait_valid(
            self.lease_value, timeout=1.0
        ):
            self.cancel()
            raise GateClosed("the lease is no longer held")
        if urlsplit(request.url or "").path.endswith("/synccheck"):
            # itchat's receive loop is sequential: by its next synccheck, every message of
            # the previous webwxsync is on msgList — or lost inside itchat. The marker lets
            # the pump store from the raw entries whatever did not arrive.
            batch = self.watch.close_batch()
            if batch:
                self.core.msgList.put({BATCH_END: batch})

    def _run(self) -> None:
        outcome: Outcome = "protocol"
        message = ""
        try:
            self._precheck()
            self.core.auto_login(
                hotReload=self.hot_reload,
                statusStorageDir=str(self.session.path),
                qrCallback=self._on_qr,
                loginCallback=self._on_login,
                exitCallback=self._on_exit,
            )
            if self.me is not None:
                outcome = "logged_in"
                if self.hot_reload:
                    self.session.secure()
            else:
                message = "itchat stopped the login without a session"
        except (AttemptCancelled, GateClosed):
            outcome = "cancelled"
        except QrLimitReached:
            outcome = "qr_limit"
            message = (
                f"no scan after {self.settings.max_qr_codes} QR codes; send relogin for a new one"
            )
        except (SystemExit, Unreachable) as exc:
            outcome = "unreachable"
            detail = f": {exc}" if isinstance(exc, Unreachable) else ""
            message = f"WeChat ({urlsplit(self.base_url).netloc}) cannot be reached{detail}"
        except KeyError as exc:
            outcome, message = self._refusal(exc)
        except (requests.ConnectionError, requests.Timeout) as exc:
            outcome = "unreachable"
            message = f"lost the connection to WeChat during login ({type(exc).__name__})"
        except Exception as exc:
            message = f"unexpected answer from WeChat during login ({type(exc).__name__})"
        finally:
            self.core.isLogging = False
            self._login_done.set()
        if self.cancelled.is_set() and outcome != "logged_in":
            outcome = "cancelled"
        log.info(
            "login_attempt_ended",
            extra={"generation": self.generation, "outcome": outcome, "qr_codes": self.qr_count},
        )
        self.report(AttemptEnded(self.generation, outcome, message))

    def _precheck(self) -> None:
        # itchat's own check retries 5 times without a timeout (a black hole hangs it):
        # ask once, bounded, on the gated session.
        timeout = self.settings.http_connect_timeout_seconds
        try:
            self.core.s.get(self.base_url, timeout=(timeout, timeout))
        except GateClosed:
            raise
        except requests.RequestException as exc:
            raise Unreachable(type(exc).__name__) from None

    def _refusal(self, exc: KeyError) -> tuple[Outcome, str]:
        if not exc.args or exc.args[0] not in ("wxsid", "wxuin"):
            return "protocol", f"unexpected answer from WeChat during login (KeyError {exc})"
        ret = self.watch.login_ret
        said = self.watch.login_message or ""
        if ret not in (None, "1203"):
            return "protocol", f"WeChat rejected the login (ret {ret}) {said}".strip()
        text = f"WeChat refused a web login for this account (ret {ret or 'unknown'})"
        return "refused", f"{text}: {said}" if said else text

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise AttemptCancelled()
        self._progress_at = time.monotonic()

    def _emit(self, payload: LoginData) -> None:
        try:
            done = with_retry(
                lambda: self.publisher.login_event(payload), self.lease, self.cancelled,
                what=payload.type,
            )  # fmt: skip
        except Fenced:
            self.cancel()
            raise AttemptCancelled() from None
        if done is None:
            raise AttemptCancelled()

    def _on_qr(self, uuid: str, status: str, qrcode: bytes) -> None:
        self._check()
        if uuid != self.uuid:
            self.uuid = uuid
            if not qrcode and status != "0":
                # A uuid that came without a QR image: itchat's push login, a prompt on the
                # phone that only needs a confirmation.
                self._push_uuids.add(uuid)
                log.info("push_login_started", extra={"uuid_hash": uuid_hash(uuid)})
                if status == "408":
                    self._emit(ConfirmLogin(uuid=uuid, extra=None))
        push = uuid in self._push_uuids
        if status == "0":
            self.qr_count += 1
            if self.qr_count > self.settings.max_qr_codes:
                raise QrLimitReached()
            self._emit(ScanQrCode(uuid=uuid, extra=base64.b64encode(qrcode).decode("ascii")))
            metrics.QR_CODES.inc()
            log.info("qr_issued", extra={"uuid_hash": uuid_hash(uuid), "n": self.qr_count})
        elif status == "201":
            if uuid not in self._confirmed:
                self._confirmed.add(uuid)
                self._emit(ConfirmLogin(uuid=uuid, extra=self.watch.avatar(uuid)))
                log.info("qr_scanned", extra={"uuid_hash": uuid_hash(uuid), "push": push})
        elif status == "200":
            self.via = "push" if push else "qr"
        elif status != "408":
            log.info("login_code_expired", extra={"uuid_hash": uuid_hash(uuid), "push": push})
            if not push and self.qr_count >= self.settings.max_qr_codes:
                raise QrLimitReached()  # before itchat asks WeChat for yet another code
            if push:
                # itchat would ask for another push login for ever while the cookie naming
                # the account is there; without it the next round is a fresh QR code.
                self.core.s.cookies.clear()

    def _on_login(self) -> None:
        self._check()
        info = self.core.loginInfo
        user = info.get("User") or {}
        user_name = str(user.get("UserName") or self.core.storageClass.userName or "")
        nick = name_text(user.get("NickName") or self.core.storageClass.nickName or "")
        via: Via = self.via or "hot_reload"
        avatar = self.watch.avatar(self.uuid) if via != "hot_reload" else None
        if avatar is None:
            avatar = self._fetch_avatar(user_name)
        self._emit(LoggedIn(user=User(id=user_name, name=nick, avatar=avatar), via=via))
        self.me = Me(user_name=user_name, nick_name=nick)
        metrics.LOGINS.labels(via=via).inc()
        log.info("logged_in", extra={"via": via, "generation": self.generation})
        self.report(LoggedInNow(self.generation, via))

    def _fetch_avatar(self, user_name: str) -> str | None:
        """The account's avatar as a data URL (hot reload has no 201 answer to take it from)."""
        try:
            response = self.core.s.get(
                f"{self.core.loginInfo['url']}/webwxgeticon",
                params={"username": user_name, "skey": self.core.loginInfo.get("skey", "")},
                timeout=(5.0, 10.0),
            )
        except Exception as exc:
            log.info("avatar_unavailable", extra={"error": type(exc).__name__})
            return None
        data = response.content
        if response.status_code != 200 or not data or len(data) > MAX_AVATAR_BYTES:
            return None
        return f"data:{_sniff_image(data)};base64,{base64.b64encode(data).decode('ascii')}"

    def _contact(self, user_name: str) -> dict[str, Any] | None:
        """itchat's local copy of a contact (friend, official account or group), if any."""
        core = self.core
        for search in (core.search_chatrooms, core.search_mps, core.search_friends):
            try:
                found = search(userName=user_name)
            except Exception as exc:
                log.debug("contact_lookup_failed", extra={"error": type(exc).__name__})
                continue
            if found:
                return dict(found)
        return None

    def _on_exit(self) -> None:
        self._login_done.wait(10.0)
        reason, retcode = logout_reason(self.watch.last_sync)
        self.report(SessionEnded(self.generation, reason, retcode))
