"""Where a stream starts: the state for a new client, the tail or Redis for a resume, or a
``reset`` when the client's place no longer exists.

The classic race between "read history" and "go live" is closed the way every mature hub
closes it: the client is registered with the hub first (its cursor is the hub's head at that
instant, ``H``), then history is read from Redis up to and including ``H`` only, so the live
tail continues exactly where the history stops: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, cast

import redis.asyncio as aredis
from redis.client import NEVER_DECODE

from shared.streams import StreamId, xrange

from .hub import Client, Hub, HubState
from .sse import frame_fields

Source = Literal["state", "memory", "redis", "reset"]

# How long a client whose id is newer than this process's reader waits for it to catch up.
CATCH_UP_SECONDS = 2.0


@dataclass(slots=True)
class Plan:
    source: Source
    reason: str | None = None  # for a reset
    after: str | None = None  # for a redis replay: the client's id (exclusive start)
    until: str | None = None  # ... and the head at registration (inclusive end)


def fmt_sid(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


async def _exists(redis: aredis.Redis, key: str, entry_id: str) -> bool:
    return bool(await xrange(redis, key, entry_id, entry_id, count=1))


async def plan_start(
    hub: Hub, redis: aredis.Redis, client: Client, snap: HubState, last_id: StreamId | None
) -> Plan:
    """Decide where ``client`` (already registered at ``snap``) starts."""
    if last_id is None:
        return Plan("state")
    seq = hub.position_of(last_id)
    if seq is not None and not hub.behind(seq):
        client.cursor = seq
        return Plan("memory")
    head = snap.head_sid
    entry_id = fmt_sid(last_id)
    if head is None or last_id > head:
        # Newer than anything this process has read (or it has read nothing yet, just after
        # a start): another gateway's reader may be a few milliseconds ahead. Wait for ours
        # to catch up if the id is real; replaying "up to our head" would replay nothing and
        # then send the entry itself again.
        if not await _exists(redis, hub.key, entry_id):
            return Plan("reset", reason="unknown_id")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CATCH_UP_SECONDS
        while (seq := hub.position_of(last_id)) is None:
            left = deadline - loop.time()
            if left <= 0:
                return Plan("reset", reason="unknown_id")
            # Bounded: the entry may never reach the tail (skipped as malformed, or this
            # reader is backing off from Redis), and a quiet stream appends nothing else.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hub.changed.wait(), left)
        client.cursor = seq
        return Plan("memory")
    if seq is None and hub.sids and last_id >= hub.sids[0]:
        # Inside the span the tail covers, yet not in it: no such entry in this stream.
        return Plan("reset", reason="unknown_id")
    if not await _exists(redis, hub.key, entry_id):
        return Plan("reset", reason="trimmed" if last_id < head else "unknown_id")
    return Plan("redis", after=entry_id, until=fmt_sid(head))


class HistoryGap(Exception):
    """Entries the client still needed were trimmed while its history was being read."""


def raw_view(client: aredis.Redis) -> aredis.Redis:
    """A client on ``client``'s pool whose XRANGE replies stay as Redis sent them.

    History is the one place where entries are read by the hundred thousand; redis-py's
    decoding and its field-list-to-dict step were half of a replay's CPU
    (bench/ANALYSIS.md). The view shares the pool (no connection of its own) and is read
    with ``NEVER_DECODE``.
    """
    view = aredis.Redis(connection_pool=client.connection_pool)
    view.response_callbacks.pop("XRANGE", None)
    return view


RawPage = list[tuple[bytes, list[bytes]]]


async def _page(raw: aredis.Redis, key: str, start: bytes, end: str, count: int) -> RawPage:
    execute = cast(Callable[..., Awaitable[object]], raw.execute_command)  # untyped upstream
    reply = await execute("XRANGE", key, start, end, "COUNT", count, **{NEVER_DECODE: True})
    return cast(RawPage, reply or [])


async def history(
    raw: aredis.Redis, key: str, plan: Plan, page: int
) -> AsyncGenerator[bytes, None]:
    """The entries after ``plan.after`` up to ``plan.until`` from Redis, a page per write.

    ``raw`` is a ``raw_view``. Each page starts *at* the last entry already sent
    (inclusive) and must begin with it: if ``MAXLEN`` trimmed past it meanwhile, XRANGE
    would quietly start later, so that is a ``HistoryGap`` (the caller sends ``reset``),
    never a hole. The next page is requested before this one is framed and written, so
    Redis and the gateway work at the same time. Close the iterator (``aclosing``) when
    leaving early: it cancels that request.
    """
    if plan.after is None or plan.until is None:
        raise ValueError("history needs a plan with both ends")
    start = plan.after.encode()
    fetch = asyncio.ensure_future(_page(raw, key, start, plan.until, page + 1))
    try:
        while True:
            entries = await fetch
            if not entries or entries[0][0] != start:
                raise HistoryGap(start.decode())
            last_page = len(entries) <= page
            if not last_page:
                start = entries[-1][0]
                fetch = asyncio.ensure_future(_page(raw, key, start, plan.until, page + 1))
            frames = [frame_fields(entry_id, fields) for entry_id, fields in entries[1:]]
            data = b"".join(f for f in frames if f is not None)
            if data:
                yield data
            if last_page:
                return
    finally:
        if not fetch.done():
            fetch.cancel()
        elif not fetch.cancelled():
            fetch.exception()  # read, so a failed prefetch nobody awaited logs nothing
