"""Every append the login service makes, fenced by the lease in one Lua script.

The script compares the lease key with this process's lease value and only then XADDs,
to one stream or to several at once: a received message goes to ``<ns>:messages`` and, as a
``message`` event, to ``<ns>:events`` in the same script, so either both have it or neither.
A process whose lease has expired or been taken over gets :class:`Fenced` and writes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from pydantic import BaseModel

from services.login import metrics
from services.login.lease import LeaseState
from shared.events import LoginData, event_name
from shared.keys import Keys
from shared.messages import ChatMessage
from shared.metrics import REDIS_UP
from shared.streams import FIELD_DATA, FIELD_EVENT, FIELD_TS, encode

log = logging.getLogger(__name__)

T = TypeVar("T")

# KEYS[1] the lease, KEYS[2..] the streams; ARGV[1] our lease value, ARGV[2..4] the entry
# (event, data, ts), ARGV[5..] one approximate MAXLEN per stream.
PUBLISH_LUA = f"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local ids = {{}}
for i = 2, #KEYS do
  ids[#ids + 1] = redis.call('XADD', KEYS[i], 'MAXLEN', '~', ARGV[i + 3], '*',
    '{FIELD_EVENT}', ARGV[2], '{FIELD_DATA}', ARGV[3], '{FIELD_TS}', ARGV[4])
end
return ids
"""


# A received message, stored at most once: KEYS[1] the lease, KEYS[2] the message's dedupe
# key, KEYS[3] messages, KEYS[4] events; ARGV as above plus ARGV[7] the dedupe key's TTL and
# ARGV[8] the event's data (the message with its text cut if very long; ARGV[3], stored in
# the messages stream, is always whole).
# A retried publish (a reply lost to a timeout, a reconnect that re-sent the script) finds
# the dedupe key and writes nothing a second time.
MESSAGE_LUA = f"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[7]) then return {{}} end
local ids = {{}}
ids[1] = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*',
  '{FIELD_EVENT}', ARGV[2], '{FIELD_DATA}', ARGV[3], '{FIELD_TS}', ARGV[4])
ids[2] = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*',
  '{FIELD_EVENT}', ARGV[2], '{FIELD_DATA}', ARGV[8], '{FIELD_TS}', ARGV[4])
return ids
"""

# How long a message id is remembered: far longer than any retry or redelivery takes.
DEDUPE_SECONDS = 7 * 24 * 3600


class Fenced(Exception):
    """This process does not hold the lease (any more): nothing was written."""


class Publisher:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        lease: LeaseState,
        *,
        events_maxlen: int,
        messages_maxlen: int,
        dead_letters_maxlen: int = 10_000,
    ) -> None:
        self.keys = keys
        self.lease = lease
        self.events_maxlen = events_maxlen
        self.messages_maxlen = messages_maxlen
        self.dead_letters_maxlen = dead_letters_maxlen
        self._script = client.register_script(PUBLISH_LUA)
        self._message_script = client.register_script(MESSAGE_LUA)

    def append(
        self, streams: Sequence[tuple[str, int]], name: str, payload: BaseModel
    ) -> list[str]:
        """XADD one entry to every ``(key, maxlen)`` if we hold the lease; else :class:`Fenced`."""
        fields = encode(name, payload)
        return self._fenced(
            self._script,
            [key for key, _ in streams],
            [
                fields[FIELD_EVENT],
                fields[FIELD_DATA],
                fields[FIELD_TS],
                *(maxlen for _, maxlen in streams),
            ],
        )

    def _fenced(self, script: Any, keys: list[str], args: list[Any]) -> list[str]:
        """Run a script whose KEYS[1] is the lease and ARGV[1] our lease value; it answers
        false (None here) when the lease in Redis is another owner's: :class:`Fenced`."""
        value = self.lease.value()
        if value is None:
            metrics.FENCED.inc()
            raise Fenced("the lease is not held (locally expired or lost)")
        try:
            ids = script(keys=[self.keys.login_lease, *keys], args=[value, *args])
        except redis.RedisError:
            REDIS_UP.set(0)
            raise
        REDIS_UP.set(1)
        if ids is None:
            metrics.FENCED.inc()
            raise Fenced("the lease in Redis holds another owner's token")
        return [str(i) for i in ids]

    def login_event(self, payload: LoginData) -> str:
        return self.append([(self.keys.events, self.events_maxlen)], event_name(payload), payload)[
            0
        ]

    def message(self, message: ChatMessage) -> list[str]:
        """Store a received message (messages stream + ``message`` event) once; an empty
        list when this message id was stored already."""
        fields = encode(event_name(message), message)
        event = message.for_event()
        event_data = fields[FIELD_DATA] if event is message else event.model_dump_json()
        return self._fenced(
            self._message_script,
            [self.keys.message_seen(message.id), self.keys.messages, self.keys.events],
            [
                fields[FIELD_EVENT],
                fields[FIELD_DATA],
                fields[FIELD_TS],
                self.messages_maxlen,
                self.events_maxlen,
                DEDUPE_SECONDS,
                event_data,
            ],
        )

    def dead_letter(self, name: str, payload: BaseModel) -> str:
        return self.append([(self.keys.dead_letters, self.dead_letters_maxlen)], name, payload)[0]


def with_retry(
    publish: Callable[[], T],
    lease: LeaseState,
    stop: threading.Event,
    *,
    what: str,
) -> T | None:
    """Retry ``publish()`` through Redis hiccups for as long as the lease stays locally valid.

    Raises :class:`Fenced` once the lease is gone (then nothing may be written any more) and
    returns None if ``stop`` is set first.
    """
    delay = 0.05
    while True:
        try:
            return publish()
        except redis.RedisError as exc:
            if lease.value() is None:
                raise Fenced("Redis unreachable until the lease expired") from exc
            log.warning("publish_retry", extra={"what": what, "error": type(exc).__name__})
        if stop.wait(delay):
            return None
        delay = min(delay * 2, 1.0)
