"""Where a stream starts: the state for a new client, the tail or Redis for a resume, or a
``reset`` when the client's place no longer exists.

The classic race between "read history" and "go live" is closed the way every mature hub
closes it: the client is registered with the hub first (its cursor is the hub's head at that
instant, ``H``), then history is read from Redis up to and including ``H`` only, so the live
tail continues exactly where the history stops: no gap, no duplicate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aredis

from shared.streams import MalformedEntry, StreamId, decode, xrange

from .hub import Client, Hub, HubState
from .sse import frame, relayable

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
        deadline = asyncio.get_running_loop().time() + CATCH_UP_SECONDS
        while (seq := hub.position_of(last_id)) is None:
            if asyncio.get_running_loop().time() > deadline:
                return Plan("reset", reason="unknown_id")
            await hub.changed.wait()
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


async def history(redis: aredis.Redis, key: str, plan: Plan, page: int) -> AsyncIterator[bytes]:
    """The entries after ``plan.after`` up to ``plan.until`` from Redis, a page per write.

    Each page starts *at* the last entry already sent (inclusive) and must begin with it:
    if ``MAXLEN`` trimmed past it meanwhile, XRANGE would quietly start later, so that is a
    ``HistoryGap`` (the caller sends ``reset``), never a hole.
    """
    if plan.after is None or plan.until is None:
        raise ValueError("history needs a plan with both ends")
    start = plan.after
    while True:
        entries = await xrange(redis, key, start, plan.until, count=page + 1)
        if not entries or entries[0][0] != start:
            raise HistoryGap(start)
        entries = entries[1:]
        if not entries:
            return
        parts: list[bytes] = []
        for entry_id, fields in entries:
            try:
                entry = decode(entry_id, fields)
            except MalformedEntry:
                continue
            if relayable(entry):
                parts.append(frame(entry))
        if parts:
            yield b"".join(parts)
        if len(entries) < page:
            return
        start = entries[-1][0]
