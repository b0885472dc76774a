"""How an event is written to and read from a Redis Stream, the same way in every service.

A stream entry holds three fields: ``event`` (the name), ``data`` (the JSON) and ``ts``
(the producer's clock in milliseconds, so consumers can measure delivery lag).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, cast

import redis.asyncio as aredis
from pydantic import BaseModel

from shared.events import EventPayload, event_name, parse_event

FIELD_EVENT: Final = "event"
FIELD_DATA: Final = "data"
FIELD_TS: Final = "ts"

# Canonical form only (no leading zeros): the exact ids Redis issues, so "5-00" is not
# quietly the same entry as "5-0".
_STREAM_ID = re.compile(r"^(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,19})$")
MAX_ID_PART: Final = 2**64 - 1

StreamId = tuple[int, int]
Fields = Mapping[str, str] | Mapping[bytes, bytes] | Mapping[str | bytes, str | bytes]


class MalformedEntry(ValueError):
    """A stream entry that does not follow the contract (a producer bug or a hand XADD)."""


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    event: str
    data: str
    ts_ms: int

    def payload(self) -> EventPayload:
        """The validated event; raises ``MalformedEntry`` if it breaks the contract."""
        try:
            return parse_event(self.event, self.data)
        except ValueError as exc:
            raise MalformedEntry(f"entry {self.id}: {exc}") from exc


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_stream_id(value: str) -> StreamId:
    """``"1700000000000-3"`` → ``(1700000000000, 3)``; ``ValueError`` on anything else."""
    match = _STREAM_ID.match(value)
    if match is None:
        raise ValueError(f"not a stream id: {value[:64]!r}")
    ms, seq = int(match.group(1)), int(match.group(2))
    if ms > MAX_ID_PART or seq > MAX_ID_PART:
        raise ValueError(f"stream id out of range: {value[:64]!r}")
    return ms, seq


def encode(name: str, payload: BaseModel, *, ts_ms: int | None = None) -> dict[str, str]:
    """The fields of one stream entry."""
    return {
        FIELD_EVENT: name,
        FIELD_DATA: payload.model_dump_json(),
        FIELD_TS: str(now_ms() if ts_ms is None else ts_ms),
    }


def encode_event(payload: EventPayload, *, ts_ms: int | None = None) -> dict[str, str]:
    return encode(event_name(payload), payload, ts_ms=ts_ms)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def decode(entry_id: str | bytes, fields: Fields) -> Entry:
    """Read an entry's fields back; ``MalformedEntry`` if a field is missing or wrong."""
    eid = _text(entry_id)
    text = {_text(k): _text(v) for k, v in fields.items()}
    try:
        name, data, ts = text[FIELD_EVENT], text[FIELD_DATA], text[FIELD_TS]
    except KeyError as exc:
        raise MalformedEntry(f"entry {eid}: missing field {exc.args[0]!r}") from None
    try:
        ts_ms = int(ts)
    except ValueError:
        raise MalformedEntry(f"entry {eid}: ts is not an integer") from None
    return Entry(id=eid, event=name, data=data, ts_ms=ts_ms)


# Typed reads. redis-py's reply types are unions of every possible shape; with
# ``decode_responses=True`` (shared.redis_client) an entry is ``(id, {field: value})``.
RawEntry = tuple[str, dict[str, str]]


def _entries(reply: object) -> list[RawEntry]:
    return cast(list[RawEntry], reply or [])


async def xrange(
    client: aredis.Redis, key: str, start: str = "-", end: str = "+", *, count: int
) -> list[RawEntry]:
    return _entries(await client.xrange(key, start, end, count=count))


async def xrevrange(
    client: aredis.Redis, key: str, end: str = "+", start: str = "-", *, count: int
) -> list[RawEntry]:
    return _entries(await client.xrevrange(key, end, start, count=count))
