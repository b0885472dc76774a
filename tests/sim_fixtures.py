"""Drive a real itchat ``Core`` against the WeChat simulator, with every callback recorded.

itchat is synchronous and blocking: ``auto_login`` runs on a thread of its own, and the test
waits on what the callbacks recorded (events and a condition), never on the clock.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WAIT = 10.0
"""Upper bound for any single wait; a healthy run takes milliseconds to a second or two."""


@dataclass(frozen=True)
class QrCall:
    uuid: str
    status: str
    qrcode: bytes


class ItchatRun:
    """One ``Core``'s ``auto_login`` on a background thread."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.qr_calls: list[QrCall] = []
        self.logged_in = threading.Event()
        self.exited = threading.Event()
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self, **auto_login_kwargs: Any) -> ItchatRun:
        def run() -> None:
            try:
                self.core.auto_login(
                    qrCallback=self._on_qr,
                    loginCallback=self.logged_in.set,
                    exitCallback=self.exited.set,
                    **auto_login_kwargs,
                )
            except BaseException as exc:  # auto_login raises SystemExit when offline
                self.error = exc
            finally:
                self.finished.set()

        self._thread = threading.Thread(target=run, name="itchat-login", daemon=True)
        self._thread.start()
        return self

    def _on_qr(self, uuid: str, status: str, qrcode: bytes) -> None:
        with self._changed:
            self.qr_calls.append(QrCall(uuid=uuid, status=status, qrcode=qrcode))
            self._changed.notify_all()

    def wait_qr(self, matches: Callable[[QrCall], bool], timeout: float = WAIT) -> QrCall:
        """The first recorded qrCallback call that ``matches``, waiting for it if need be."""

        def found() -> QrCall | None:
            return next((call for call in self.qr_calls if matches(call)), None)

        with self._changed:
            if not self._changed.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no matching qrCallback; calls so far: {self.qr_calls}")
            call = found()
            assert call is not None
            return call

    def next_message(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next chat message itchat queued, skipping its own contact-update notices."""
        while True:
            try:
                msg: dict[str, Any] = self.core.msgList.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError("no message reached core.msgList") from None
            if msg.get("Type") != "System":
                return msg

    def stop(self) -> None:
        """Make the receive loop end after its in-flight synccheck, without a logout request.

        This is what a crashed or killed process looks like to WeChat: the session stays
        valid, which is what hot reload relies on.
        """
        self.core.alive = False
        self.core.isLogging = False

    def join(self, timeout: float = WAIT) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
