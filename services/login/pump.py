"""The message pump: itchat's ``core.msgList`` → normalized → fenced append, in order.

itchat's receive thread puts every message (friend, group, official account, system) on
``core.msgList``; reading that queue directly, rather than registering handlers, means
nothing is filtered by chat kind or type. Each message is appended to the messages stream
(and as a ``message`` event) before anything else happens to it; a failing Redis is
retried for as long as the lease is locally valid, so a short outage loses nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from services.login import metrics
from services.login.media import MediaSaver
from services.login.normalize import (
    Me,
    from_raw,
    is_message,
    is_raw_message,
    message_id,
    normalize,
)
from services.login.publisher import Fenced, Publisher, with_retry
from shared.messages import ChatMessage

log = logging.getLogger(__name__)

# Key of the marker the attempt puts on msgList after each webwxsync batch (see attempt.py).
BATCH_END: Final = "_wxstream_batch_end"


class MessagePump(threading.Thread):
    def __init__(
        self,
        source: queue.Queue[Any],
        me: Callable[[], Me | None],
        publisher: Publisher,
        *,
        media: MediaSaver | None,
        on_fenced: Callable[[], None],
        generation: int,
        contact: Callable[[str], Mapping[str, Any] | None],
    ) -> None:
        super().__init__(name=f"pump-{generation}", daemon=True)
        self.source = source
        self.me = me
        self.publisher = publisher
        self.media = media
        self.on_fenced = on_fenced
        self.contact = contact
        # Ids itchat delivered since the last batch marker.
        self._seen: set[str] = set()
        self._abort = threading.Event()
        self._finish = threading.Event()

    def abort(self) -> None:
        """Stop at once: this process may not publish any more."""
        self._abort.set()

    def finish(self, timeout: float) -> None:
        """Publish what is already queued, then stop (waits up to ``timeout``)."""
        self._finish.set()
        if self.is_alive():
            self.join(timeout)
        if self.is_alive():
            log.warning("pump_drain_timeout", extra={"left": self.source.qsize()})
            self._abort.set()

    def run(self) -> None:
        while not self._abort.is_set():
            me = self.me()
            if me is None:
                # Not logged in yet (hot reload queues messages before it says so).
                if self._finish.is_set() or self._abort.wait(0.05):
                    return
                continue
            try:
                item = self.source.get(timeout=0.1)
            except queue.Empty:
                if self._finish.is_set():
                    return
                continue
            try:
                self._handle(item, me)
            except Fenced:
                log.warning("message_fenced", extra={"left": self.source.qsize()})
                self._abort.set()
                self.on_fenced()
            except Exception:
                # Never a dead pump: one bad message must not stop the next ones.
                log.exception("pump_error")

    def _handle(self, item: Mapping[str, Any], me: Me) -> None:
        if BATCH_END in item:
            self._reconcile(item[BATCH_END], me)
            return
        if not is_message(item):
            log.debug("itchat_record_skipped", extra={"kind": str(item.get("SystemInfo", ""))})
            return
        self._seen.add(message_id(item))
        self._store(normalize(item, me), item)

    def _reconcile(self, batch: list[dict[str, Any]], me: Me) -> None:
        """Store, from the raw entries, what itchat received but never delivered."""
        seen, self._seen = self._seen, set()
        for entry in batch:
            if message_id(entry) in seen or not is_raw_message(entry):
                continue
            message = from_raw(entry, me, self.contact)
            log.error(
                "message_recovered_from_raw",
                extra={"msg_id": message.id, "wechat_type": message.wechat_type},
            )
            self._store(message, None)

    def _store(self, message: ChatMessage, item: Mapping[str, Any] | None) -> None:
        ids = with_retry(
            lambda: self.publisher.message(message), self.publisher.lease, self._abort,
            what="message",
        )  # fmt: skip
        if ids is None:
            return
        if not ids:
            # Stored already (a retried store whose first try landed, or WeChat delivering
            # the same message again): written once, counted once.
            log.info("message_already_stored", extra={"msg_id": message.id})
            return
        metrics.MESSAGES.labels(type=message.type).inc()
        log.info(
            "message_stored",
            extra={
                "msg_id": message.id,
                "type": message.type,
                "chat": message.chat,
                "stream_id": ids[0],
            },
        )
        if self.media is not None and item is not None:
            self.media.save(item, message)
