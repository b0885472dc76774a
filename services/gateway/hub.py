"""The one Redis reader of a gateway process, the in-memory tail, and the fan-out.

One task reads ``<ns>:events`` with a blocking XREAD (in batches) and appends each entry,
encoded to SSE bytes once, to a bounded tail. Clients hold nothing but a cursor (a sequence
number into the tail); when several events are pending for them they get them joined into
one write, and clients at the same place share the very same bytes object.

A client that has caught up is *parked*: its own task waits only for the disconnect, and the
reader, after each batch, writes the shared chunk to every parked client itself (``nowait``:
a write to a socket that is not paused completes at once). No task wakes per client per
event. A client whose socket is paused leaves the parked set; a task of its own finishes the
write and catches up from the tail, then parks it again. While the reader writes, Redis
gathers the next events, so a busy gateway reads (and writes) bigger batches by itself.

The hub also keeps the latest ``login`` and ``notification`` entries (the state a new client
gets first), notices when Redis lost the stream (a new epoch: clients get ``reset``), sends
keepalives to idle clients and cuts off those that fall too far behind.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import cast

import redis.asyncio as aredis
from redis.exceptions import RedisError

from services.gateway import metrics
from shared.metrics import REDIS_UP
from shared.streams import (
    Entry,
    MalformedEntry,
    RawEntry,
    StreamId,
    decode,
    parse_stream_id,
    xrevrange,
)

from .nowait import Message, Send, start_send
from .sse import KEEPALIVE, control_frame, frame, relayable

log = logging.getLogger("wxstream.gateway.hub")

STATE_EVENTS = ("login", "notification")
# Bytes joined into one write at most; a client further behind loops over several writes.
MAX_CHUNK = 256 * 1024
# Bytes of joined chunks kept for sharing until the next append.
MAX_CACHE = 16 * 1024 * 1024
# Parked clients written between two yields to the event loop (accepts, disconnects).
BROADCAST_SLICE = 1000


@dataclass(slots=True)
class Frame:
    seq: int
    sid: StreamId
    id: str
    event: str
    data: str  # the JSON text, for the state events only ("" for the rest)
    ts_ms: int
    raw: bytes


@dataclass(eq=False, slots=True)
class Client:
    """What the hub knows of one open stream."""

    addr: str
    task: asyncio.Task[object] | None  # the request's own task
    send: Send
    cursor: int = 0
    epoch: int = 0
    last_write: float = 0.0
    closing: str | None = None  # why the stream must end: "client", "drain", "slow", ...
    close_at: float | None = None
    live: bool = False  # started: its own task only waits for the disconnect
    writer: asyncio.Task[None] | None = None  # finishing a write the socket did not take
    writing: bool = False  # a write is under way: cut now, the response cannot end cleanly
    hub_cancelled: bool = False  # its task was cancelled by ``cut`` (not by the server)


@dataclass(slots=True)
class Chunk:
    data: bytes
    last_seq: int
    newest_ts_ms: int
    count: int


@dataclass
class HubState:
    """Where a newly registered client starts: the head and the epoch at that instant."""

    head_seq: int
    head_sid: StreamId | None
    epoch: int
    state: list[Frame] = field(default_factory=list)


def to_frame(seq: int, entry: Entry) -> Frame:
    return Frame(
        seq=seq,
        sid=parse_stream_id(entry.id),
        id=entry.id,
        event=entry.event,
        # The JSON text is read back only from the state events (GET /api/state); the
        # others are kept once, encoded.
        data=entry.data if entry.event in STATE_EVENTS else "",
        ts_ms=entry.ts_ms,
        raw=frame(entry),
    )


class Hub:
    def __init__(
        self,
        client: aredis.Redis,
        key: str,
        *,
        tail_size: int,
        max_lag: int,
        tail_max_bytes: int = 64 * 1024 * 1024,
        read_batch: int,
        read_block_ms: int,
        keepalive_seconds: float,
    ) -> None:
        self.redis = client
        self.key = key
        self.tail_size = tail_size
        self.max_lag = max_lag
        # A batch longer than the tail (or than the lag a client may have) would put
        # clients that were up to date out of it: they would be cut as slow.
        self.read_batch = min(read_batch, tail_size, max_lag)
        self.read_block_ms = read_block_ms
        self.keepalive_seconds = keepalive_seconds

        self.tail_max_bytes = tail_max_bytes
        self.frames: list[Frame] = []
        self.tail_bytes = 0  # of the frames' encoded bytes
        self.sids: list[StreamId] = []
        self.base_seq = 1  # seq of frames[0]
        self.next_seq = 1
        self.epoch = 0
        self.latest: dict[str, Frame] = {}
        self.last_id = "0-0"
        self.changed = asyncio.Event()  # set (and replaced) on every append
        self.clients: set[Client] = set()
        # Clients at the head whose last write went through: the reader writes to them.
        self.parked: set[Client] = set()
        self.loaded = asyncio.Event()
        self.reader_up = False
        self.draining = False
        self._cache: dict[int, Chunk] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._empty = asyncio.Event()
        self._cache_bytes = 0
        self._stopping = False
        self._lost = False  # the stream was lost and the tail not reloaded yet

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="hub-reader"),
            asyncio.create_task(self._tick_loop(), name="hub-ticker"),
        ]

    async def stop(self) -> None:
        # The flag as well as the cancel: on Python 3.11, redis-py's internal wait_for can
        # swallow a cancel that lands as its write completes, and the loop would go on.
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=2.0)
        self.reader_up = False
        metrics.READER_UP.set(0)

    # -- the tail ------------------------------------------------------------------------

    @property
    def head_seq(self) -> int:
        return self.next_seq - 1

    def _wake(self) -> None:
        old, self.changed = self.changed, asyncio.Event()
        old.set()

    def _append(self, entries: Sequence[tuple[str, dict[str, str]]], *, wake: bool = True) -> int:
        added = 0
        for entry_id, fields in entries:
            self.last_id = entry_id
            try:
                entry = decode(entry_id, fields)
                if not relayable(entry):
                    raise MalformedEntry(f"entry {entry_id}: not relayable ({entry.event[:32]!r})")
                fr = to_frame(self.next_seq, entry)
            except (MalformedEntry, ValueError) as exc:
                metrics.MALFORMED.inc()
                log.warning(
                    "malformed_entry_skipped", extra={"entry_id": entry_id, "why": str(exc)}
                )
                continue
            self.next_seq += 1
            self.tail_bytes += len(fr.raw)
            self.frames.append(fr)
            self.sids.append(fr.sid)
            if fr.event in STATE_EVENTS:
                self.latest[fr.event] = fr
            added += 1
        if len(self.frames) > 2 * self.tail_size or self.tail_bytes > 2 * self.tail_max_bytes:
            self._trim()
        if added:
            self._clear_cache()
            metrics.TAIL_EVENTS.set(len(self.frames))
            metrics.TAIL_BYTES.set(self.tail_bytes)
            if wake:
                self._wake()
        return added

    def _trim(self) -> None:
        """Down to ``tail_size`` frames and ``tail_max_bytes``, oldest first (always
        keeping the newest frame). Trimming only past twice either bound keeps it rare."""
        drop = max(0, len(self.frames) - self.tail_size)
        dropped_bytes = sum(len(fr.raw) for fr in self.frames[:drop])
        while drop < len(self.frames) - 1 and self.tail_bytes - dropped_bytes > self.tail_max_bytes:
            dropped_bytes += len(self.frames[drop].raw)
            drop += 1
        del self.frames[:drop]
        del self.sids[:drop]
        self.base_seq += drop
        self.tail_bytes -= dropped_bytes
        metrics.TAIL_BYTES.set(self.tail_bytes)

    def _clear_cache(self) -> None:
        self._cache.clear()
        self._cache_bytes = 0

    def position_of(self, sid: StreamId) -> int | None:
        """The seq of the tail frame with exactly this stream id, if the tail holds it."""
        i = bisect.bisect_left(self.sids, sid)
        if i < len(self.sids) and self.sids[i] == sid:
            return self.base_seq + i
        return None

    def head_sid(self) -> StreamId | None:
        return self.sids[-1] if self.sids else None

    def behind(self, cursor: int) -> bool:
        """The client at ``cursor`` lost its place: out of the tail, or too far behind."""
        return cursor < self.base_seq - 1 or self.head_seq - cursor > self.max_lag

    def chunk_after(self, cursor: int) -> Chunk | None:
        """Everything after ``cursor`` as one write (at most MAX_CHUNK bytes), shared."""
        if cursor >= self.head_seq:
            return None
        cached = self._cache.get(cursor)
        if cached is not None:
            return cached
        start = cursor + 1 - self.base_seq
        parts: list[bytes] = []
        size = 0
        end = start
        for fr in self.frames[start:]:
            parts.append(fr.raw)
            size += len(fr.raw)
            end += 1
            if size >= MAX_CHUNK:
                break
        last = self.frames[end - 1]
        chunk = Chunk(b"".join(parts), last.seq, last.ts_ms, end - start)
        # Clients at the same place share one chunk; clients scattered over many places
        # (after a burst) must not make the cache grow without bound.
        if self._cache_bytes + len(chunk.data) <= MAX_CACHE:
            self._cache[cursor] = chunk
            self._cache_bytes += len(chunk.data)
        return chunk

    def snapshot(self) -> HubState:
        """The head, the epoch and the current state, as one consistent instant."""
        state = sorted(self.latest.values(), key=lambda f: f.sid)
        return HubState(self.head_seq, self.head_sid(), self.epoch, state)

    # -- clients -------------------------------------------------------------------------

    def register(self, client: Client) -> HubState:
        snap = self.snapshot()
        client.cursor = snap.head_seq
        client.epoch = snap.epoch
        self.clients.add(client)
        metrics.CONNECTIONS.set(len(self.clients))
        return snap

    def unregister(self, client: Client) -> None:
        self.clients.discard(client)
        self.parked.discard(client)
        if client.writer is not None and client.writer is not asyncio.current_task():
            client.writer.cancel()
        metrics.CONNECTIONS.set(len(self.clients))
        if not self.clients:
            self._empty.set()

    async def wait_empty(self, seconds: float) -> bool:
        """Wait until no stream is open (or ``seconds`` pass); True if none is."""
        if self.clients:
            self._empty.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), seconds)
        return not self.clients

    def drain(self, seconds: float) -> None:
        """End every open stream within ``seconds``, spread out so clients do not all
        reconnect to the other gateways in the same instant."""
        self.draining = True
        now = asyncio.get_running_loop().time()
        for client in self.clients:
            client.close_at = now + random.uniform(0, seconds * 0.8)

    # -- background work -----------------------------------------------------------------

    async def _read_loop(self) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                if not self.loaded.is_set():
                    # After a loss, the epoch moves on only once the reload succeeded: a
                    # reload that failed is retried as the same new epoch, never as old.
                    await self._load(new_epoch=self._lost)
                    self._lost = False
                    await self._broadcast()
                found, entries = await self._read_after_last()
                self._set_up(True)
                backoff = 0.1
                if not found:
                    self._stream_lost()
                    continue
                if not entries:
                    continue
                metrics.READER_BATCH.observe(len(entries))
                if self._append(entries):
                    await self._broadcast()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._set_up(False)
                log.warning("reader_redis_error", extra={"error": type(exc).__name__})
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 5.0)
            except Exception:
                # A bug must not leave the process without a reader: log it and go on.
                self._set_up(False)
                log.exception("reader_failed")
                await asyncio.sleep(1.0)

    def _set_up(self, up: bool) -> None:
        self.reader_up = up
        metrics.READER_UP.set(1 if up else 0)
        REDIS_UP.set(1 if up else 0)

    async def _load(self, *, new_epoch: bool = False) -> None:
        """Fill the tail with the newest entries and find the latest state events.

        Every read happens first; the swap (and the epoch bump after a loss) happens with
        no ``await`` in between, so no client ever sees a half-loaded tail or state.
        """
        newest = await xrevrange(self.redis, self.key, count=self.tail_size)
        in_tail = {fields.get("event") for _, fields in newest}
        older: dict[str, Frame] = {}
        if newest and any(name not in in_tail for name in STATE_EVENTS):
            older = await self._older_state(newest[-1][0], in_tail)
        self.frames.clear()
        self.sids.clear()
        self.tail_bytes = 0
        self.latest.clear()
        self.base_seq = self.next_seq
        self._clear_cache()
        self.last_id = "0-0"
        self._append(list(reversed(newest)), wake=False)
        for name, fr in older.items():
            self.latest.setdefault(name, fr)
        if new_epoch:
            self.epoch += 1
        self.loaded.set()
        self._set_up(True)
        self._wake()
        log.info(
            "hub_loaded", extra={"entries": len(self.frames), "epoch": self.epoch, "key": self.key}
        )

    async def _older_state(self, before: str, found: set[str | None]) -> dict[str, Frame]:
        """Page backwards past the tail for the state events the tail does not hold."""
        latest: dict[str, Frame] = {}
        cursor: str | None = before
        while cursor is not None and any(
            name not in found and name not in latest for name in STATE_EVENTS
        ):
            page = await xrevrange(self.redis, self.key, f"({cursor}", count=1000)
            if not page:
                break
            for entry_id, fields in page:
                try:
                    entry = decode(entry_id, fields)
                except MalformedEntry:
                    continue
                wanted = entry.event in STATE_EVENTS and entry.event not in latest
                if wanted and entry.event not in found and relayable(entry):
                    latest[entry.event] = to_frame(0, entry)
            cursor = page[-1][0]
        return latest

    async def _read_after_last(self) -> tuple[bool, list[RawEntry]]:
        """The next entries after ``last_id``, and whether ``last_id`` itself still exists.

        Both in one pipeline, so on one connection to one server: a reconnect that the
        client's retry hides (a Redis restarted without persistence, a failover to a replica
        that missed the newest writes) can never feed us entries of a stream that lost the
        ones we already relayed. If ``last_id`` is gone, Redis lost the stream (or trimmed
        past us, or the key was deleted): the caller starts a new epoch.
        """
        check = self.last_id != "0-0"
        pipe = self.redis.pipeline(transaction=False)
        if check:
            pipe.xrange(self.key, self.last_id, self.last_id, count=1)
        pipe.xread({self.key: self.last_id}, count=self.read_batch, block=self.read_block_ms)
        replies = await pipe.execute()
        found = bool(replies[0]) if check else True
        reply = replies[-1]
        if not reply:
            return found, []
        return found, cast(list[RawEntry], cast(list[tuple[str, object]], reply)[0][1])

    def _stream_lost(self) -> None:
        """The entry we read last is gone: the reader reloads the tail as a new epoch and
        tells every client (``reset``)."""
        metrics.EPOCHS.inc()
        log.warning("stream_lost", extra={"key": self.key, "epoch": self.epoch + 1})
        self._lost = True
        self.loaded.clear()

    async def _tick_loop(self) -> None:
        """Slow-client cut-offs, the drain schedule and keepalives: one timer."""
        loop = asyncio.get_running_loop()
        # Idle streams need a comment every keepalive_seconds: looking three times per
        # interval is enough (a comment is at most a third late), and costs nothing between.
        look_every = self.keepalive_seconds / 3
        last_look = loop.time()
        while not self._stopping:
            await asyncio.sleep(0.25 if self.draining else min(1.0, look_every))
            now = loop.time()
            for client in list(self.clients):
                if client.closing is not None:
                    continue
                if client.close_at is not None and now >= client.close_at:
                    self.cut(client, "drain")
                elif (
                    client not in self.parked
                    and client.epoch == self.epoch
                    and self.behind(client.cursor)
                ):
                    self.cut(client, "slow")
            if now - last_look >= look_every:
                last_look = now
                self._keepalives(now)

    def _keepalives(self, now: float) -> None:
        message: Message = {"type": "http.response.body", "body": KEEPALIVE, "more_body": True}
        for client in list(self.parked):
            if now - client.last_write >= self.keepalive_seconds:
                self._deliver(client, message, now)

    def cut(self, client: Client, reason: str) -> None:
        """End a client's stream (the first reason given wins).

        A started client's own task only waits for the disconnect, so it is cancelled to
        end the response. A client still starting (replaying) notices ``closing`` between
        writes, unless it is too slow: it may be stuck in a write to a full socket, and
        only cancelling frees it. Its memory is the shared tail, so nothing piles up.
        """
        if client.closing is not None:
            return
        client.closing = reason
        self.parked.discard(client)
        current = asyncio.current_task()
        if client.writer is not None and client.writer is not current:
            client.writer.cancel()
        if (
            client.task is not None
            and client.task is not current
            and (client.live or reason == "slow")
        ):
            client.hub_cancelled = True
            client.task.cancel()

    # -- writing to clients --------------------------------------------------------------

    async def _broadcast(self) -> None:
        """Write what is new to every parked client; called by the reader after a batch.

        Only the reader changes the tail, so the head stays put while it broadcasts, even
        across the yields that let the loop accept and serve meanwhile.
        """
        parked = self.parked
        if not parked:
            return
        loop = asyncio.get_running_loop()
        head = self.head_seq
        # behind(cursor) for this head, as one comparison per client.
        lowest = max(self.base_seq - 1, head - self.max_lag)
        now = loop.time()
        messages: dict[int, tuple[Message, Chunk]] = {}
        reset: Message | None = None
        written: dict[int, int] = {}  # cursor -> clients written from it
        for n, client in enumerate(list(parked)):
            if n and n % BROADCAST_SLICE == 0:
                self._observe(messages, written)
                written.clear()
                await asyncio.sleep(0)
                now = loop.time()
            if client not in parked:  # cut, or left, meanwhile
                continue
            if client.epoch != self.epoch:
                if reset is None:
                    reset = _body(reset_bytes(self.snapshot(), "stream_lost"))
                client.cursor, client.epoch = head, self.epoch
                metrics.RESUMES.labels("reset").inc()
                self._deliver(client, reset, now)
                continue
            # A batch bigger than one chunk takes several writes; the first one the
            # socket cannot take hands the rest to the client's own task.
            cursor = client.cursor
            if cursor < lowest:  # a batch bigger than the tail went past it
                self.cut(client, "slow")
                continue
            while cursor < head:
                prepared = messages.get(cursor)
                if prepared is None:
                    chunk = self.chunk_after(cursor)
                    if chunk is None:
                        break
                    prepared = messages[cursor] = (_body(chunk.data), chunk)
                client.cursor = prepared[1].last_seq
                written[cursor] = written.get(cursor, 0) + 1
                if not self._deliver(client, prepared[0], now):
                    break
                cursor = client.cursor
        self._observe(messages, written)

    @staticmethod
    def _observe(messages: dict[int, tuple[Message, Chunk]], written: dict[int, int]) -> None:
        wall = time.time()
        for cursor, clients in written.items():
            chunk = messages[cursor][1]
            metrics.DELIVERED.inc(chunk.count * clients)
            metrics.DELIVERY_LAG.observe(max(0.0, wall - chunk.newest_ts_ms / 1000), clients)

    def _deliver(self, client: Client, message: Message, now: float) -> bool:
        """One write to a parked client, from the hub, without waiting for it.

        True if it went through at once and the client is still parked.
        """
        try:
            pending = start_send(client.send, message)
        except Exception as exc:  # the server refused the write: the connection is gone
            log.debug("write_refused", extra={"error": type(exc).__name__})
            client.writing = True  # no clean end either
            self.cut(client, "client")
            return False
        client.last_write = now
        if pending is None:
            return True
        # The socket is paused: a task of the client's own finishes the write.
        metrics.PAUSED_WRITES.inc()
        self.parked.discard(client)
        client.writing = True
        client.writer = asyncio.create_task(self._finish(client, pending))
        return False

    async def _finish(self, client: Client, pending: Awaitable[None]) -> None:
        reason: str | None
        try:
            await pending
            client.writing = False
            client.last_write = asyncio.get_running_loop().time()
            reason = await self.follow(client)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("write_failed", extra={"error": type(exc).__name__})
            client.writing = True  # no clean end either
            reason = "client"
        finally:
            client.writer = None
        if reason is not None:
            self.cut(client, reason)

    async def follow(self, client: Client) -> str | None:
        """Write everything after the client's cursor, then park it at the head.

        Returns why the stream must end instead, if it must.
        """
        loop = asyncio.get_running_loop()
        while True:
            if client.closing is not None:
                return client.closing
            if client.epoch != self.epoch:
                # Redis lost the stream this client was reading: say so, then the state.
                fresh = self.snapshot()
                client.cursor, client.epoch = fresh.head_seq, fresh.epoch
                metrics.RESUMES.labels("reset").inc()
                await write(client, reset_bytes(fresh, "stream_lost"))
                continue
            if self.behind(client.cursor):
                return "slow"
            chunk = self.chunk_after(client.cursor)
            if chunk is None:
                # At the head, with no await since the check: from here the reader writes.
                self.parked.add(client)
                return None
            await write(client, chunk.data)
            client.cursor = chunk.last_seq
            metrics.DELIVERED.inc(chunk.count)
            metrics.DELIVERY_LAG.observe(max(0.0, time.time() - chunk.newest_ts_ms / 1000))
            client.last_write = loop.time()


async def write(client: Client, data: bytes) -> None:
    """A write by a client's own task; ``writing`` says if it was cut off in the middle."""
    client.writing = True
    await client.send(_body(data))
    client.writing = False


def _body(data: bytes) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": True}


def state_bytes(snap: HubState) -> bytes:
    return b"".join(fr.raw for fr in snap.state)


def reset_bytes(snap: HubState, reason: str) -> bytes:
    """``reset`` (no id), then the current state, so the page can redraw at once."""
    return control_frame("reset", {"reason": reason}) + state_bytes(snap)
