"""The unread count, kept exact by three Lua scripts that each run atomically in Redis.

State, all under the account's hash tag (one Cluster slot, so the scripts stay legal):

- ``unread``     the count (a plain integer string: ``GET`` works for anyone);
- ``counted``    ZSET of message ids counted since the last mark-read, each scored by the
                 ms part of the newest messages-stream entry that carried it;
- ``<unread>:mark``  the read mark, a hash: ``command`` is the entry id of the last
                 ``mark_read`` applied, ``ms`` its millisecond part. Stream ids come from
                 Redis's clock, so a messages entry from an earlier millisecond was in the
                 stream when the user asked: it is read. One from the same millisecond
                 cannot have been seen yet: it stays unread;
- ``published``  the last count appended to the events stream.

Why the count is exact:

1. **Count.** For each entry the script first ``XACK``s it. The PEL is the token: an entry
   another consumer already handled (it claimed ours while we stalled, or the reverse) acks
   0 and changes nothing. An entry at or before the read mark is read already. Otherwise
   ``ZADD GT`` of the message id adds it at most once however many entries carry it
   (redelivery, a rewound or recreated group, two replicas, login appending twice), and
   only an addition increments the counter. Ack, dedupe and increment are one atomic step,
   so no crash can leave an entry counted but pending, or acked but uncounted.
2. **Mark read.** Applies a command only if its ack succeeds and its entry id is after the
   last applied one, so a ``mark_read`` delivered again (claimed, or re-read by a rewound or
   recreated group) never zeroes messages that came after it. It trims ``counted`` below the
   mark and the count becomes what is left: messages that arrived after the click and were
   counted before the command was handled stay unread. The result does not depend on
   whether the messages or the command were handled first.
3. **Publish.** Compares the counter with ``published`` and, only if they differ, XADDs
   ``notification {"count": n}`` and records ``n``. Scripts run one at a time, so the
   notifications in the events stream follow the counter's own history: two replicas can
   never append an older count after a newer one, and an unchanged count is never repeated.

``counted`` stays bounded: trimmed at every mark, and trimmed below the messages stream's
first entry (an entry trimmed from the stream can never be delivered again), so it never
holds more ids than the stream holds entries. The one cost of the second trim: a
``mark_read`` handled only after more than ``messages_maxlen`` newer messages would count
the trimmed ones as read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import redis.asyncio as aredis

from shared.events import NOTIFICATION
from shared.keys import Keys
from shared.streams import FIELD_DATA, FIELD_EVENT, FIELD_TS

# Shared by the scripts: stream ids compare as (ms, seq) pairs, never as strings.
_LUA_IDS: Final = """
local function parse_id(id)
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function id_after(a, b)
  local a_ms, a_seq = parse_id(a)
  local b_ms, b_seq = parse_id(b)
  return a_ms > b_ms or (a_ms == b_ms and a_seq > b_seq)
end
"""

# KEYS: messages stream, unread, counted, read mark. ARGV: group, then (entry id, message id)*
_COUNT: Final = (
    _LUA_IDS
    + """
-- Everything that can fail is checked before the first write: a script is not rolled back.
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if not current then return redis.error_reply('unread counter is not an integer') end
local counted_type = redis.call('TYPE', KEYS[3])['ok']
if counted_type ~= 'zset' and counted_type ~= 'none' then
  return redis.error_reply('counted set has type ' .. counted_type)
end
local mark_ms = tonumber(redis.call('HGET', KEYS[4], 'ms') or '-1')
local outcomes = {}
local added = 0
for i = 2, #ARGV, 2 do
  local entry_id, message_id = ARGV[i], ARGV[i + 1]
  local outcome
  if redis.call('XACK', KEYS[1], ARGV[1], entry_id) == 0 then
    outcome = 'stale'
  elseif tonumber(string.match(entry_id, '^%d+')) < mark_ms then
    outcome = 'read'
  elseif redis.call('ZADD', KEYS[3], 'GT', string.match(entry_id, '^%d+'), message_id) == 1 then
    added = added + 1
    outcome = 'counted'
  else
    outcome = 'duplicate'
  end
  outcomes[#outcomes + 1] = outcome
end
if added > 0 then
  current = current + added
  redis.call('SET', KEYS[2], current)
end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
if first then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.match(first[1], '^%d+'))
end
return {current, outcomes}
"""
)

# KEYS: commands stream, unread, counted, read mark. ARGV: group, command entry id
_MARK_READ: Final = (
    _LUA_IDS
    + """
local applied = redis.call('HGET', KEYS[4], 'command')
local counted_type = redis.call('TYPE', KEYS[3])['ok']
if counted_type ~= 'zset' and counted_type ~= 'none' then
  return redis.error_reply('counted set has type ' .. counted_type)
end
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 0 or (applied and not id_after(ARGV[2], applied)) then
  -- Handled already: by another consumer, or before a rewound or recreated group
  -- delivered it again. Applying it twice would zero messages that came after it.
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0') or 0}
end
local ms = string.match(ARGV[2], '^%d+')
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ms)
local count = redis.call('ZCARD', KEYS[3])
redis.call('SET', KEYS[2], count)
redis.call('HSET', KEYS[4], 'command', ARGV[2], 'ms', ms)
return {1, count}
"""
)

# KEYS: unread, published, events stream.
# ARGV: maxlen, ts, then the field names and event name (one definition, in shared.streams).
_PUBLISH: Final = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local published = tonumber(redis.call('GET', KEYS[2]) or '0')
if count == published then return {count, ''} end
-- Byte for byte what Notification(count=n).model_dump_json() gives.
local data = '{"count":' .. string.format('%d', count) .. '}'
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], '*',
  ARGV[3], ARGV[4], ARGV[5], data, ARGV[6], ARGV[2])
redis.call('SET', KEYS[2], count)
return {count, id}
"""


class Outcome(StrEnum):
    COUNTED = "counted"  # a new message id: the count went up
    DUPLICATE = "duplicate"  # this message id was counted already
    STALE = "stale"  # this entry was acknowledged already (by another consumer)
    READ = "read"  # the entry was in the stream when the last mark_read was sent


@dataclass(frozen=True, slots=True)
class Countable:
    """What counting needs from one messages-stream entry."""

    entry_id: str
    message_id: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class Counted:
    count: int
    outcomes: tuple[Outcome, ...]


@dataclass(frozen=True, slots=True)
class MarkedRead:
    applied: bool  # False: this command was acknowledged already, nothing changed
    count: int


@dataclass(frozen=True, slots=True)
class Published:
    count: int
    entry_id: str | None  # None: that count was published already


class UnreadCounter:
    """The three scripts, bound to one account's keys and one consumer group."""

    def __init__(self, client: aredis.Redis, keys: Keys, *, group: str, events_maxlen: int):
        self._keys = keys
        self._group = group
        self._events_maxlen = events_maxlen
        self._count = client.register_script(_COUNT)
        self._mark_read = client.register_script(_MARK_READ)
        self._publish = client.register_script(_PUBLISH)

    async def count(self, messages: Sequence[Countable]) -> Counted:
        """Ack and count a batch of entries; one outcome per entry, in order."""
        args: list[str] = [self._group]
        for message in messages:
            args += (message.entry_id, message.message_id)
        k = self._keys
        reply = await self._count(keys=[k.messages, k.unread, k.counted, k.read_mark], args=args)
        count, outcomes = reply
        return Counted(int(count), tuple(Outcome(o) for o in outcomes))

    async def mark_read(self, command_id: str) -> MarkedRead:
        """Apply the ``mark_read`` command at ``command_id`` unless it was applied already."""
        k = self._keys
        reply = await self._mark_read(
            keys=[k.commands, k.unread, k.counted, k.read_mark],
            args=[self._group, command_id],
        )
        applied, count = reply
        return MarkedRead(bool(applied), int(count))

    async def publish(self, ts_ms: int) -> Published:
        """Append ``notification`` if the count differs from the last one published."""
        k = self._keys
        reply = await self._publish(
            keys=[k.unread, k.published_count, k.events],
            args=[
                self._events_maxlen,
                ts_ms,
                FIELD_EVENT,
                NOTIFICATION,
                FIELD_DATA,
                FIELD_TS,
            ],
        )
        count, entry_id = reply
        return Published(int(count), str(entry_id) or None)
