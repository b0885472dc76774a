"""The notifier's loop: read messages and commands through a consumer group, count, publish.

One task does all of it, in this order, until :meth:`Notifier.stop`:

    join     create the groups where missing; re-read our own pending entries first
    claim    every claim interval: take over entries idle too long (a dead replica's),
             and publish a count that a replica dying inside its window left unpublished
    read     XREADGROUP both streams, blocking at most until the next publish is due
    handle   count a batch of messages (one script), apply mark_read, dead-letter the rest
    publish  when the coalescing window closes, or at once after mark_read

Everything handled is acknowledged inside the same script that acts on it, so an error at
any point leaves the entries in our PEL: we join again and re-read them from ``0``.
Redis errors never end the loop: it backs off with jitter and reports not-ready meanwhile.
Stopping lets the current read return (at most ``read_block_seconds``), handles what it
got, flushes a pending publish and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any, Final

import redis
import redis.asyncio as aredis

from services.notifier import metrics
from services.notifier.coalescer import Coalescer
from services.notifier.consumer_group import START, ConsumerGroup, is_nogroup
from services.notifier.dead_letters import DeadLetters
from services.notifier.entries import CommandEntry, read_command, read_message
from services.notifier.settings import NotifierSettings
from services.notifier.unread import Countable, Outcome, UnreadCounter
from shared.backoff import Backoff
from shared.metrics import REDIS_UP
from shared.streams import MalformedEntry, now_ms

log = logging.getLogger(__name__)

REDIS_ERRORS: Final = (redis.ConnectionError, redis.TimeoutError)
NEW: Final = ">"  # XREADGROUP: entries never delivered to the group
OWN_PENDING: Final = "0"  # XREADGROUP: this consumer's pending entries, from the start
MARK_READ: Final = "mark_read"
# A consumer this idle with nothing pending is a replica that is gone (pids change on
# every restart): forgetting it keeps XINFO CONSUMERS short. Live ones read every second.
FORGET_CONSUMERS_AFTER_SECONDS: Final = 600.0

Entries = list[tuple[str, dict[str, str]]]


class Notifier:
    def __init__(self, settings: NotifierSettings, client: aredis.Redis) -> None:
        self._settings = settings
        self._keys = keys = settings.keys
        self._redis = client
        self._streams = (keys.messages, keys.commands)
        self._names = {keys.messages: "messages", keys.commands: "commands"}
        self._group = ConsumerGroup(client, group=settings.group, consumer=settings.consumer)
        self._counter = UnreadCounter(
            client, keys, group=settings.group, events_maxlen=settings.events_maxlen
        )
        self._dead_letters = DeadLetters(
            client, keys.dead_letters, group=settings.group, maxlen=settings.dead_letters_maxlen
        )
        self._coalescer = Coalescer(settings.coalesce_seconds)
        self._backoff = Backoff(cap=settings.backoff_max_seconds)
        self._stopping = asyncio.Event()
        self._joined = False
        self._cursors: dict[str, str] = {}  # per stream: NEW, or where our PEL re-read is
        self._claim_cursors: dict[str, str] = {}
        self._next_claim = 0.0
        self._running = False
        self._redis_ok = False
        self._step_ok = False
        self._beat = time.monotonic()

    def stop(self) -> None:
        self._stopping.set()

    def readiness(self) -> dict[str, bool]:
        """For /readyz: Redis answered the last step, and the loop is turning."""
        s = self._settings
        stuck_after = s.read_block_seconds + 2 * s.redis_timeout_seconds + s.backoff_max_seconds
        turning = time.monotonic() - self._beat < stuck_after + 1
        running = self._running and not self._stopping.is_set()
        return {"redis": self._redis_ok, "loop": running and turning and self._step_ok}

    async def run(self) -> None:
        self._running = True
        log.info(
            "notifier_started",
            extra={"group": self._group.group, "consumer": self._group.consumer},
        )
        try:
            while not self._stopping.is_set():
                self._beat = time.monotonic()
                try:
                    if not self._joined:
                        await self._join()
                    if time.monotonic() >= self._next_claim:
                        await self._claim()
                    for stream, entries in (await self._read()).items():
                        if stream == self._keys.messages:
                            await self._count(entries)
                        elif stream == self._keys.commands:
                            await self._commands(entries)
                    if self._coalescer.due():
                        await self._publish()
                    self._step_succeeded()
                except REDIS_ERRORS as exc:
                    await self._redis_down(exc)
                except redis.ResponseError as exc:
                    if not is_nogroup(exc):
                        await self._step_failed(exc)
                    else:
                        # Redis lost the stream or the group: recreate it and carry on.
                        log.warning("group_lost", extra={"error": str(exc)[:200]})
                        self._joined = False
                except Exception as exc:
                    await self._step_failed(exc)
            await self._flush()
        finally:
            self._running = False
            log.info("notifier_stopped")

    # --- the steps -------------------------------------------------------------------

    async def _join(self) -> None:
        for stream in await self._group.ensure(self._streams):
            log.info("group_created", extra={"stream": stream, "group": self._group.group})
        self._cursors = dict.fromkeys(self._streams, OWN_PENDING)
        self._claim_cursors = dict.fromkeys(self._streams, START)
        self._next_claim = 0.0
        self._joined = True
        self._step_succeeded()

    async def _claim(self) -> None:
        s = self._settings
        more = False
        for stream in self._streams:
            claim = await self._group.claim(
                stream,
                self._claim_cursors[stream],
                min_idle_ms=round(s.claim_idle_seconds * 1000),
                count=s.batch_size,
            )
            self._claim_cursors[stream] = claim.cursor
            more = more or claim.cursor != START
            if claim.ids:
                metrics.CLAIMS.inc(len(claim.ids))
                self._cursors[stream] = OWN_PENDING  # they are ours now: read them from our PEL
                log.info(
                    "claimed",
                    extra={"stream": stream, "entries": len(claim.ids), "first_id": claim.ids[0]},
                )
            if claim.deleted:
                log.info("claimed_gone", extra={"stream": stream, "entries": len(claim.deleted)})
            pending = await self._group.pending(stream)
            metrics.PENDING.labels(stream=self._names[stream]).set(pending)
            await self._group.forget_idle_consumers(
                stream, idle_ms=round(FORGET_CONSUMERS_AFTER_SECONDS * 1000)
            )
        self._next_claim = time.monotonic() + (0.0 if more else s.claim_interval_seconds)
        if not self._coalescer.pending:
            # A replica that died inside its coalescing window left a change unpublished.
            await self._publish()

    async def _read(self) -> dict[str, Entries]:
        rereading = any(cursor != NEW for cursor in self._cursors.values())
        block: int | None = None  # a PEL re-read never blocks
        if not rereading and not self._stopping.is_set():
            left = self._coalescer.seconds_left()
            wait = self._settings.read_block_seconds if left is None else left
            wait = min(wait, self._settings.read_block_seconds)
            block = max(1, round(wait * 1000)) if wait > 0 else None
        reply = await self._redis.xreadgroup(
            self._group.group,
            self._group.consumer,
            dict(self._cursors),  # type: ignore[arg-type]
            count=self._settings.batch_size,
            block=block,
        )
        batches = _by_stream(reply)
        for stream, cursor in self._cursors.items():
            if cursor != NEW:
                entries = batches.get(stream)
                self._cursors[stream] = entries[-1][0] if entries else NEW
        return batches

    async def _count(self, entries: Entries) -> None:
        stream = self._keys.messages
        countable: list[Countable] = []
        for entry_id, fields in entries:
            if not fields:
                await self._gone(stream, entry_id)
                continue
            try:
                countable.append(read_message(entry_id, fields))
            except MalformedEntry as exc:
                await self._dead_letter(stream, entry_id, fields, str(exc))
        if not countable:
            return
        counted = await self._counter.count(countable)
        tally = Counter(counted.outcomes)
        metrics.MESSAGES_COUNTED.inc(tally[Outcome.COUNTED])
        metrics.DUPLICATES.inc(tally[Outcome.DUPLICATE] + tally[Outcome.STALE])
        metrics.READ_BEFORE_MARK.inc(tally[Outcome.READ])
        metrics.UNREAD.set(counted.count)
        outcomes = zip(countable, counted.outcomes, strict=True)
        new = [message.ts_ms for message, o in outcomes if o is Outcome.COUNTED]
        if new:
            self._coalescer.changed(new)
        log.debug(
            "batch_counted",
            extra={
                "first_id": countable[0].entry_id,
                "last_id": countable[-1].entry_id,
                "unread": counted.count,
                **{str(outcome): n for outcome, n in tally.items()},
            },
        )

    async def _commands(self, entries: Entries) -> None:
        stream = self._keys.commands
        for entry_id, fields in entries:
            if not fields:
                await self._gone(stream, entry_id)
                continue
            try:
                command = read_command(entry_id, fields)
            except MalformedEntry as exc:
                await self._dead_letter(stream, entry_id, fields, str(exc))
                continue
            if command.name == MARK_READ:
                await self._mark_read(command)
            elif command.command is None:  # logout, relogin: login's, through its own group
                await self._redis.xack(stream, self._group.group, entry_id)
            else:  # ours by the contract, but not something this version can do
                reason = f"entry {entry_id}: command {command.name!r} is not implemented"
                await self._dead_letter(stream, entry_id, fields, reason)

    async def _mark_read(self, command: CommandEntry) -> None:
        marked = await self._counter.mark_read(command.entry_id)
        log.info(
            "mark_read",
            extra={
                "entry_id": command.entry_id,
                "origin": command.command.origin if command.command else None,
                "applied": marked.applied,
            },
        )
        if marked.applied:
            metrics.MARKED_READ.inc()
            metrics.UNREAD.set(marked.count)
            await self._publish()  # at once: the badge clears now, not after a window

    async def _publish(self) -> None:
        ts_ms = now_ms()
        published = await self._counter.publish(ts_ms)
        waiting = self._coalescer.published()
        metrics.UNREAD.set(published.count)
        if published.entry_id is None:
            return
        metrics.NOTIFICATIONS.inc()
        for producer_ts_ms in waiting:
            metrics.PUBLISH_LAG.observe(max(0, ts_ms - producer_ts_ms) / 1000)
        log.info("notified", extra={"count": published.count, "event_id": published.entry_id})

    async def _flush(self) -> None:
        """On the way out: a counted change still waiting for its window is published now."""
        if not self._coalescer.pending or not self._redis_ok:
            return
        try:
            await self._publish()
        except (*REDIS_ERRORS, redis.ResponseError) as exc:
            log.warning("flush_failed", extra={"error": type(exc).__name__})

    # --- entries we do not count -------------------------------------------------------

    async def _gone(self, stream: str, entry_id: str) -> None:
        """A pending entry whose data was trimmed or deleted: nothing left to count or copy."""
        await self._redis.xack(stream, self._group.group, entry_id)
        log.info("entry_gone", extra={"stream": stream, "entry_id": entry_id})

    async def _dead_letter(
        self, stream: str, entry_id: str, fields: dict[str, str], reason: str
    ) -> None:
        if await self._dead_letters.send(stream, entry_id, fields, reason):
            metrics.DEAD_LETTERS.inc()
            log.warning(
                "dead_lettered", extra={"stream": stream, "entry_id": entry_id, "reason": reason}
            )

    # --- health ----------------------------------------------------------------------

    def _step_succeeded(self) -> None:
        if not self._redis_ok:
            log.info("redis_connected")
        self._redis_ok = self._step_ok = True
        REDIS_UP.set(1)
        self._backoff.reset()

    async def _redis_down(self, exc: Exception) -> None:
        self._redis_ok = self._step_ok = False
        REDIS_UP.set(0)
        self._joined = False  # Redis may come back empty: recreate the groups, re-read our PEL
        delay = self._backoff.next_delay()
        log.warning(
            "redis_unavailable",
            extra={
                "error": type(exc).__name__,
                "detail": str(exc)[:200],
                "attempt": self._backoff.attempts,
                "retry_in": round(delay, 3),
            },
        )
        await self._pause(delay)

    async def _step_failed(self, exc: Exception) -> None:
        self._step_ok = False
        self._joined = False
        delay = self._backoff.next_delay()
        log.error(
            "step_failed",
            exc_info=exc,
            extra={"attempt": self._backoff.attempts, "retry_in": round(delay, 3)},
        )
        await self._pause(delay)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def _by_stream(reply: Any) -> dict[str, Entries]:
    """XREADGROUP's RESP2 reply, ``[[stream, [(id, fields), ...]], ...]``, by stream.

    An entry deleted while pending comes back with empty fields.
    """
    if not reply:
        return {}
    return {
        str(stream): [(str(entry_id), dict(fields or {})) for entry_id, fields in entries]
        for stream, entries in reply
    }
