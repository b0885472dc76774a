"""The driver: the login service's state machine, on its own thread, fed through one inbox.

Everything that changes what the service does arrives as an item in the inbox — the lease
won or lost, a command, an attempt that ended, a session that ended, shutdown — and is
handled here, one at a time, so the whole behaviour can be read in :meth:`Driver._handle`:

``standby`` (no lease) → lease won → ``logging_in`` (hot reload if a session was saved,
else push login or QR) → ``logged_in`` → session ended or ``logout`` → ``idle`` (no new QR
until ``relogin``). A failed attempt (WeChat unreachable, account refused, nonsense) waits
in ``backoff`` (exponential, with jitter) and then tries again; ``relogin`` retries at once.
Losing the lease stops everything locally at once, from any state.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Final, Literal

from services.login import metrics
from services.login.attempt import AttemptEnded, LoggedInNow, LoginAttempt, SessionEnded
from services.login.commands import CommandIn
from services.login.lease import LeaseState
from services.login.publisher import Fenced, Publisher, with_retry
from services.login.session_file import SessionFile
from services.login.settings import LoginSettings
from shared.backoff import backoff_delay
from shared.events import LoggedOut, LoginData, LoginError, LogoutReason

log = logging.getLogger(__name__)

State = Literal["standby", "logging_in", "logged_in", "backoff", "idle", "stopped"]

# Sessions WeChat itself ended: the saved state would only lead to a failed reload and a
# push prompt on the phone the user just logged out from.
WECHAT_ENDED: Final = frozenset({"phone_logout", "elsewhere", "invalid_session", "unknown"})
TICK_SECONDS: Final = 0.5


@dataclass(frozen=True, slots=True)
class LeaseAcquired:
    value: str


@dataclass(frozen=True, slots=True)
class LeaseLost:
    why: str


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


class Driver(threading.Thread):
    def __init__(
        self,
        settings: LoginSettings,
        itchat: ModuleType,
        lease: LeaseState,
        publisher: Publisher,
    ) -> None:
        super().__init__(name="driver", daemon=True)
        self.settings = settings
        self.itchat = itchat
        self.lease = lease
        self.publisher = publisher
        self.session = SessionFile(settings.session_file)
        self.inbox: queue.Queue[object] = queue.Queue()
        self.state: State = "standby"
        self.attempt: LoginAttempt | None = None
        self.generation = 0
        self.failures = 0
        self.retry_at: float | None = None
        self._lease_value: str | None = None
        self._stop_publishing = threading.Event()

    def submit(self, item: object) -> None:
        """Thread-safe: the only way in."""
        self.inbox.put(item)

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        while self.state != "stopped":
            try:
                item: object | None = self.inbox.get(timeout=TICK_SECONDS)
            except queue.Empty:
                item = None
            try:
                if item is not None:
                    self._handle(item)
                self._tick()
            except Exception:
                # The driver must outlive any single failure; the state stays as it was.
                log.exception("driver_error", extra={"state": self.state})

    def _handle(self, item: object) -> None:
        if isinstance(item, LeaseAcquired):
            self._lease_value = item.value
            self.failures = 0
            self._start_attempt()
        elif isinstance(item, LeaseLost):
            self._lease_value = None
            self._drop_attempt(abandon=True)
            self._set_state("standby")
        elif isinstance(item, CommandIn):
            self._command(item)
        elif isinstance(item, LoggedInNow):
            if self._current(item.generation):
                self.failures = 0
                self._set_state("logged_in")
        elif isinstance(item, AttemptEnded):
            if self._current(item.generation):
                self._attempt_ended(item)
        elif isinstance(item, SessionEnded):
            if self._current(item.generation) and self.state == "logged_in":
                self._session_ended(item)
        elif isinstance(item, Shutdown):
            self._shutdown()

    def _tick(self) -> None:
        now = time.monotonic()
        if self.state == "backoff" and self.retry_at is not None and now >= self.retry_at:
            self._start_attempt()
        elif self.state == "logging_in" and self.attempt is not None:
            stalled = now - self.attempt.last_progress
            if stalled > self.settings.login_stall_seconds:
                log.warning("login_stalled", extra={"seconds": round(stalled)})
                self._drop_attempt(abandon=False)
                self._failed("protocol", "WeChat stopped answering during login", kind="stalled")

    # --- transitions ---------------------------------------------------------------------

    def _take_attempt(self) -> LoginAttempt | None:
        """Detach the current attempt (it stays alive until its own threads end)."""
        attempt, self.attempt = self.attempt, None
        if attempt is not None:
            attempt.forget()
        return attempt

    def _current(self, generation: int) -> bool:
        return self.attempt is not None and self.attempt.generation == generation

    def _set_state(self, state: State) -> None:
        if state != self.state:
            log.info("state", extra={"from": self.state, "to": state})
        self.state = state
        metrics.LOGGED_IN.set(1 if state == "logged_in" else 0)

    def _start_attempt(self) -> None:
        if self._lease_value is None:
            return
        self._drop_attempt(abandon=False)
        self.retry_at = None
        hot_reload = True
        inspection = self.session.inspect()
        if inspection.verdict == "unsafe":
            log.error(
                "session_file_refused",
                extra={"problem": inspection.problem, "path": str(self.session.directory)},
            )
            # A bad file in a good directory is moved aside; in a bad directory nothing is
            # loaded from or saved to it at all.
            hot_reload = self.session.prepare_dir() is None and self.session.set_aside()
        self.generation += 1
        attempt = LoginAttempt(
            generation=self.generation,
            itchat=self.itchat,
            settings=self.settings,
            session=self.session,
            hot_reload=hot_reload,
            lease=self.lease,
            lease_value=self._lease_value,
            publisher=self.publisher,
            report=self.submit,
        )
        self.attempt = attempt
        self._set_state("logging_in")
        log.info(
            "login_attempt_started",
            extra={
                "generation": self.generation,
                "saved_session": inspection.verdict == "ok",
                "hot_reload": hot_reload,
            },
        )
        attempt.start()

    def _drop_attempt(self, *, abandon: bool) -> None:
        attempt = self._take_attempt()
        if attempt is None:
            return
        if abandon:
            attempt.abandon()
        else:
            attempt.cancel()
            attempt.pump.finish(1.0)

    def _attempt_ended(self, ended: AttemptEnded) -> None:
        if ended.outcome == "logged_in":
            return  # LoggedInNow already moved us; the session file is saved by now
        if ended.outcome == "cancelled":
            return
        self._take_attempt()
        if ended.outcome == "qr_limit":
            self._emit(LoginError(reason="qr_timeout", message=ended.message))
            self._set_state("idle")
            return
        self._failed(ended.outcome, ended.message, kind=ended.outcome)

    def _failed(
        self, reason: Literal["unreachable", "refused", "protocol"], message: str, *, kind: str
    ) -> None:
        self.failures += 1
        delay = backoff_delay(
            self.failures,
            base=self.settings.backoff_base_seconds,
            cap=self.settings.backoff_max_seconds,
        )
        metrics.WECHAT_ERRORS.labels(kind=kind).inc()
        log.warning(
            "login_failed",
            extra={"reason": reason, "failures": self.failures, "retry_in": round(delay, 2)},
        )
        self._emit(LoginError(reason=reason, message=message, retry_in=round(delay, 2)))
        self.retry_at = time.monotonic() + delay
        self._set_state("backoff")

    def _session_ended(self, ended: SessionEnded) -> None:
        attempt = self._take_attempt()
        uuid = attempt.uuid if attempt else None
        if attempt is not None:
            attempt.pump.finish(2.0)
        if ended.reason in WECHAT_ENDED:
            self.session.delete()
        if ended.reason == "errors":
            metrics.WECHAT_ERRORS.labels(kind="session_errors").inc()
        metrics.LOGOUTS.labels(reason=ended.reason).inc()
        log.warning("logged_out", extra={"reason": ended.reason, "retcode": ended.retcode})
        self._emit(LoggedOut(uuid=uuid, reason=ended.reason, retcode=ended.retcode))
        self._set_state("idle")

    def _command(self, cmd: CommandIn) -> None:
        if self._lease_value is None:
            return  # not ours to act on; left pending for the owner to claim
        if cmd.name == "logout":
            self._logout()
        elif cmd.name == "relogin":
            self._relogin()
        cmd.ack()

    def _logout(self) -> None:
        attempt = self._take_attempt()
        uuid = attempt.uuid if attempt else None
        if attempt is not None and self.state == "logged_in":
            attempt.logout_remote(drain_timeout=2.0)
            # Right after a QR login itchat may still be writing the session file.
            attempt.wait_login_done(5.0)
        elif attempt is not None:
            attempt.cancel()
            attempt.pump.finish(1.0)
        # Whatever was saved must not bring the session back on the next start.
        self.session.delete()
        self.retry_at = None
        reason: LogoutReason = "command"
        metrics.LOGOUTS.labels(reason=reason).inc()
        log.info("logged_out", extra={"reason": reason, "was": self.state})
        self._emit(LoggedOut(uuid=uuid, reason=reason))
        self._set_state("idle")

    def _relogin(self) -> None:
        if self.state == "logged_in":
            log.info("relogin_ignored", extra={"why": "already logged in"})
            return
        self._start_attempt()

    def _shutdown(self) -> None:
        attempt = self._take_attempt()
        try:
            if attempt is not None and self.state == "logged_in":
                attempt.save_and_stop(drain_timeout=1.5)
            elif attempt is not None:
                attempt.cancel()
                attempt.pump.finish(0.5)
        finally:
            self._stop_publishing.set()
            self.state = "stopped"
            metrics.LOGGED_IN.set(0)

    def _emit(self, payload: LoginData) -> None:
        try:
            with_retry(
                lambda: self.publisher.login_event(payload), self.lease, self._stop_publishing,
                what=payload.type,
            )  # fmt: skip
        except Fenced:
            log.warning("event_fenced", extra={"type": payload.type})
