"""The one producer every server is fed by: the same events, at the same rate.

Each event is ``Notification(count=seq)`` under the id ``<producer ms>-<seq>`` (XADD with
an explicit id), so a client reads both the producer's timestamp and the sequence number
from the SSE id alone. For stream servers it XADDs to ``<ns>:events`` with
``shared.streams.encode_event`` (the fields the gateway relays, ``ts`` = the id's ms); for
Flask-SSE it PUBLISHes the same event in Flask-SSE's own message format (what
``sse.publish(data, type=..., id=...)`` sends).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aredis

from shared.events import Notification
from shared.streams import encode_event

Mode = Literal["stream", "pubsub"]
FLASK_SSE_CHANNEL = "sse"


@dataclass
class Produced:
    first_seq: int
    last_seq: int
    started: float  # wall clock (time.time()) of the first event
    ended: float
    commands: int  # Redis commands the producer itself sent
    first_id: str = ""

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1


class Producer:
    def __init__(self, client: aredis.Redis, key: str, mode: Mode) -> None:
        self.client = client
        self.key = key
        self.mode = mode
        self.next_seq = 1
        self._last_ms = 0
        self.commands = 0
        self.last_first_id = ""  # the id of the first event of the latest emit()

    def _next_id(self) -> tuple[str, int, int]:
        ms = max(time.time_ns() // 1_000_000, self._last_ms)
        self._last_ms = ms
        seq = self.next_seq
        self.next_seq += 1
        return f"{ms}-{seq}", ms, seq

    async def emit(self, count: int) -> None:
        """``count`` events in one pipeline (one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        for i in range(count):
            entry_id, ms, seq = self._next_id()
            if i == 0:
                self.last_first_id = entry_id
            if self.mode == "stream":
                fields = encode_event(Notification(count=seq), ts_ms=ms)
                pipe.xadd(self.key, fields, id=entry_id)  # type: ignore[arg-type]
            else:
                message = {"data": {"count": seq}, "type": "notification", "id": entry_id}
                pipe.publish(FLASK_SSE_CHANNEL, json.dumps(message))
        self.commands += count
        await pipe.execute()

    async def run(self, rate: float, seconds: float) -> Produced:
        """``rate`` events/s for ``seconds``, paced on absolute times (no drift)."""
        total = max(1, round(rate * seconds))
        first = self.next_seq
        commands0 = self.commands
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        wall0 = time.time()
        sent = 0
        while sent < total:
            due = min(total, int((loop.time() - t0) * rate) + 1)
            if due > sent:
                await self.emit(due - sent)
                sent = due
                continue
            await asyncio.sleep(max(0.0, t0 + sent / rate - loop.time()))
        return Produced(first, self.next_seq - 1, wall0, time.time(), self.commands - commands0)

    async def prefill(self, count: int, batch: int = 2_000) -> Produced:
        """``count`` events as fast as Redis takes them (for replay and resume)."""
        first = self.next_seq
        commands0 = self.commands
        wall0 = time.time()
        left = count
        first_id = ""
        while left > 0:
            step = min(batch, left)
            await self.emit(step)
            first_id = first_id or self.last_first_id
            left -= step
        return Produced(
            first, self.next_seq - 1, wall0, time.time(), self.commands - commands0, first_id
        )
