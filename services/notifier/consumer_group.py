"""The notifier's consumer group on each stream it reads: create it, claim from the dead.

A group is created at ``0`` with ``MKSTREAM``: on first start every message already in the
stream is unread (none was ever marked read), and after Redis lost the group the counting
script's dedupe makes re-reading the whole stream harmless. ``BUSYGROUP`` means another
replica got there first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis
import redis.asyncio as aredis

START: Final = "0-0"  # an XAUTOCLAIM scan starts, and ends, here

# KEYS: the stream. ARGV: group, this consumer, idle threshold in ms.
# A consumer with nothing pending owns nothing, so forgetting it loses nothing, and being
# one script it cannot race a delivery. A live consumer forgotten by mistake comes back on
# its next read.
_FORGET_IDLE: Final = """
local forgotten = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do info[consumer[i]] = consumer[i + 1] end
  if info['name'] ~= ARGV[2] and info['pending'] == 0 and info['idle'] > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    forgotten = forgotten + 1
  end
end
return forgotten
"""


def is_nogroup(exc: redis.ResponseError) -> bool:
    """Redis lost the stream or the group (a restart without persistence, a hand DEL)."""
    return str(exc).startswith("NOGROUP")


@dataclass(frozen=True, slots=True)
class Claim:
    cursor: str  # where the next scan continues; START when the PEL was scanned to its end
    ids: tuple[str, ...]  # entries now pending for us (on 6.2 they may include deleted ones)
    deleted: tuple[str, ...]  # 7.0+: pending entries whose data was gone, dropped by Redis


def parse_autoclaim(reply: Sequence[Any]) -> Claim:
    """``XAUTOCLAIM ... JUSTID``: 3 elements on Redis 7 (deleted ids last), 2 on 6.2."""
    cursor, ids = reply[0], reply[1]
    deleted = reply[2] if len(reply) > 2 else []
    return Claim(str(cursor), tuple(str(i) for i in ids if i), tuple(str(i) for i in deleted))


class ConsumerGroup:
    """One group name and one consumer name, over several streams."""

    def __init__(self, client: aredis.Redis, *, group: str, consumer: str) -> None:
        self.group = group
        self.consumer = consumer
        self._client = client
        self._forget_idle = client.register_script(_FORGET_IDLE)
        # redis-py's XAUTOCLAIM parser drops the cursor when JUSTID is given: take the reply
        # raw on this client (the notifier's own) and parse it here, for both reply shapes.
        client.set_response_callback("XAUTOCLAIM", _raw_reply)

    async def ensure(self, streams: Sequence[str]) -> list[str]:
        """Create the group where it is missing; the streams where it was created."""
        created: list[str] = []
        for stream in streams:
            try:
                await self._client.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise
            else:
                created.append(stream)
        return created

    async def claim(self, stream: str, cursor: str, *, min_idle_ms: int, count: int) -> Claim:
        """Take over entries pending longer than ``min_idle_ms`` for any consumer.

        ``JUSTID`` leaves the delivery counter alone and returns no data: the caller reads
        what it now owns from its own PEL (``XREADGROUP ... 0``), one path for every
        redelivery.
        """
        reply = await self._client.xautoclaim(
            stream, self.group, self.consumer, min_idle_ms, cursor, count=count, justid=True
        )
        return parse_autoclaim(reply)

    async def pending(self, stream: str) -> int:
        """Entries delivered to any consumer of the group and not yet acknowledged."""
        summary = await self._client.xpending(stream, self.group)
        return int(summary["pending"])

    async def forget_idle_consumers(self, stream: str, *, idle_ms: int) -> int:
        """Delete consumers idle longer than ``idle_ms`` with nothing pending (restarts pile up)."""
        forgotten = await self._forget_idle(
            keys=[stream], args=[self.group, self.consumer, idle_ms]
        )
        return int(forgotten)


def _raw_reply(response: Any, **options: Any) -> Any:
    return response
