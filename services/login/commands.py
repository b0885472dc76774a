"""The login service's commands: consumer group ``login`` on ``<ns>:commands``.

Every worker reads the whole commands stream through its own group. This one hands
``logout`` and ``relogin`` to the driver (which acknowledges them once done), acknowledges
what belongs to other workers (``mark_read``), and acknowledges and dead-letters anything
it cannot understand — nothing is retried for ever. Only the lease holder reads: a
standby would otherwise take commands meant for the process that drives the account.
When a process becomes the owner it first claims what a previous owner read but never
acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis
from pydantic import ValidationError

from services.login import metrics
from services.login.lease import LeaseState
from services.login.publisher import Fenced, Publisher
from shared.commands import COMMAND_NAMES, LOGIN_COMMANDS, Command
from shared.dead_letters import DEAD_LETTER, DeadLetter
from shared.keys import Keys
from shared.metrics import REDIS_UP
from shared.streams import MalformedEntry, decode, now_ms

log = logging.getLogger(__name__)

GROUP: Final = "login"
BLOCK_MS: Final = 1000
MAX_FIELD_CHARS: Final = 2000


@dataclass(frozen=True, slots=True)
class CommandIn:
    """A command for the driver; ``ack`` is called once the driver has acted on it."""

    name: str
    entry_id: str
    command: Command
    ack: Callable[[], None]


# Commands pending this long in the group are claimed again by the lease holder.
ORPHAN_IDLE_SECONDS = 30.0


class CommandConsumer(threading.Thread):
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        lease: LeaseState,
        publisher: Publisher,
        submit: Callable[[CommandIn], None],
        *,
        consumer: str,
        max_age_seconds: float,
        poll_seconds: float,
    ) -> None:
        super().__init__(name="commands", daemon=True)
        self.client = client
        self.keys = keys
        self.lease = lease
        self.publisher = publisher
        self.submit = submit
        self.consumer = consumer
        self.max_age_ms = int(max_age_seconds * 1000)
        self.poll_seconds = poll_seconds
        self._halt = threading.Event()
        self._group_ready = False

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        claimed_for: str | None = None
        last_sweep = time.monotonic()
        while not self._halt.is_set():
            value = self.lease.value()
            if value is None:
                claimed_for = None
                self._halt.wait(self.poll_seconds)
                continue
            try:
                self._ensure_group()
                if claimed_for != value:
                    self._claim_orphans()
                    claimed_for = value
                elif time.monotonic() - last_sweep >= ORPHAN_IDLE_SECONDS:
                    # A command read but never acknowledged (say the driver saw it before it
                    # knew it held the lease) is picked up again while we keep the lease.
                    self._claim_orphans(min_idle_ms=int(ORPHAN_IDLE_SECONDS * 1000))
                    last_sweep = time.monotonic()
                reply = self.client.xreadgroup(
                    GROUP, self.consumer, {self.keys.commands: ">"}, count=16, block=BLOCK_MS
                )
                REDIS_UP.set(1)
            except redis.RedisError as exc:
                if "NOGROUP" in str(exc):
                    # Redis lost the stream or the group (restart without persistence).
                    self._group_ready = False
                else:
                    REDIS_UP.set(0)
                log.warning("commands_read_failed", extra={"error": type(exc).__name__})
                self._halt.wait(1.0)
                continue
            streams: list[tuple[str, list[tuple[str, dict[str, str]]]]] = reply or []  # type: ignore[assignment]
            for _stream, entries in streams:
                self._handle_all(entries)

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From the start of the stream: a command sent before the first login process
            # ever ran is still seen (and skipped if too old).
            self.client.xgroup_create(self.keys.commands, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _claim_orphans(self, min_idle_ms: int = 0) -> None:
        start = "0-0"
        while True:
            reply: Sequence[Any] = self.client.xautoclaim(
                self.keys.commands,
                GROUP,
                self.consumer,
                min_idle_time=min_idle_ms,
                start_id=start,
                count=100,
            )
            # Redis 6.2 answers [next, entries]; 7.x adds the ids of deleted entries.
            next_id, entries = reply[0], reply[1]
            live = [(eid, fields) for eid, fields in entries if fields]
            if live:
                log.info("commands_claimed", extra={"count": len(live)})
                self._handle_all(live)
            for eid, fields in entries:
                if not fields:
                    self._ack(eid)
            if not next_id or next_id == "0-0":
                return
            start = next_id

    def _handle_all(self, entries: Sequence[tuple[str, Mapping[str, str] | None]]) -> None:
        for entry_id, fields in entries:
            try:
                self._handle(entry_id, fields or {})
            except redis.RedisError as exc:
                # Left pending; claimed again by the next owner.
                log.warning(
                    "command_ack_failed", extra={"entry": entry_id, "error": type(exc).__name__}
                )

    def _handle(self, entry_id: str, fields: Mapping[str, str]) -> None:
        try:
            entry = decode(entry_id, fields)
        except MalformedEntry as exc:
            self._reject(entry_id, fields, f"malformed entry: {exc}")
            return
        name = entry.event
        if name not in LOGIN_COMMANDS:
            if name in COMMAND_NAMES:
                self._ack(entry_id)  # another worker's command; its own group handles it
                metrics.COMMANDS.labels(outcome="not_ours").inc()
            else:
                self._reject(entry_id, fields, f"unknown command {name[:64]!r}")
            return
        try:
            command = Command.model_validate_json(entry.data)
        except ValidationError as exc:
            self._reject(entry_id, fields, f"invalid {name} data: {exc.error_count()} errors")
            return
        age_ms = now_ms() - entry.ts_ms
        if age_ms > self.max_age_ms:
            log.warning(
                "command_expired",
                extra={"command": name, "entry": entry_id, "age_s": age_ms // 1000},
            )
            metrics.COMMANDS.labels(outcome="expired").inc()
            self._ack(entry_id)
            return
        log.info(
            "command_received", extra={"command": name, "entry": entry_id, "origin": command.origin}
        )
        metrics.COMMANDS.labels(outcome="accepted").inc()
        self.submit(CommandIn(name, entry_id, command, lambda: self._safe_ack(entry_id)))

    def _reject(self, entry_id: str, fields: Mapping[str, str], reason: str) -> None:
        log.warning("command_rejected", extra={"entry": entry_id, "reason": reason})
        metrics.COMMANDS.labels(outcome="rejected").inc()
        letter = DeadLetter(
            source=self.keys.commands,
            id=entry_id,
            group=GROUP,
            reason=reason,
            fields={str(k)[:100]: str(v)[:MAX_FIELD_CHARS] for k, v in fields.items()},
        )
        try:
            self.publisher.dead_letter(DEAD_LETTER, letter)
        except (Fenced, redis.RedisError) as exc:
            log.warning(
                "dead_letter_failed", extra={"entry": entry_id, "error": type(exc).__name__}
            )
        self._ack(entry_id)

    def _ack(self, entry_id: str) -> None:
        self.client.xack(self.keys.commands, GROUP, entry_id)

    def _safe_ack(self, entry_id: str) -> None:
        for attempt in range(3):
            try:
                self._ack(entry_id)
                return
            except redis.RedisError as exc:
                log.warning(
                    "command_ack_retry", extra={"entry": entry_id, "error": type(exc).__name__}
                )
                time.sleep(0.2 * (attempt + 1))
