"""Malformed entries in the events stream (a producer bug or a hand-written XADD): missing
fields, non-JSON, newlines in the data, unknown event names, huge entries, binary junk. The
gateway's one reader logs and skips them, live and in a replay from Redis; it never stops,
and clients get exactly the well-formed events around them. (The notifier's dead letters and
the login service's malformed commands are in tests/test_notifier.py and
tests/test_login_session.py.)"""

from __future__ import annotations

import asyncio
import random

import pytest
import redis
from fault_fixtures import Recorder
from gateway_fixtures import GatewayFactory
from procs import wait_for

from shared.events import Notification
from shared.keys import Keys
from shared.streams import encode_event

RANDOM_ENTRIES = 150


def random_entries(seed: int) -> list[dict[bytes, bytes]]:
    """Fields of random names and values (some borrowing the contract's names)."""
    rng = random.Random(seed)
    names = [b"event", b"data", b"ts", b"id", b""]
    out = []
    for _ in range(RANDOM_ENTRIES):
        fields = {}
        for _ in range(rng.randint(1, 4)):
            name = rng.choice(names) if rng.random() < 0.6 else rng.randbytes(rng.randint(1, 12))
            fields[name] = rng.randbytes(rng.randint(0, 300))
        out.append(fields)
    return out


HAND_WRITTEN: list[dict[str, str | bytes]] = [
    {"event": "notification"},  # no data, no ts
    {"data": '{"count": 1}', "ts": "1"},  # no event
    {"event": "notification", "data": "{not json", "ts": "1"},
    {"event": "notification", "data": '{"count": 1}\n\nevent: login\ndata: {}', "ts": "1"},
    {"event": "notification", "data": '{"count": 1}\r\ndata: x', "ts": "1"},
    {"event": "notification", "data": '{"count": 1}', "ts": "yesterday"},
    {"event": "self_destruct", "data": "{}", "ts": "1"},
    {"event": "login\nid: 9-9", "data": "{}", "ts": "1"},
    {"event": "notification", "data": "x" * 2_000_000, "ts": "1"},  # 2 MB, not JSON
    {"event": b"\xff\xfe", "data": b"\x00\x01\x02", "ts": b"\x80"},
    {"event": "notification", "data": "", "ts": "1"},
    {"x": "y"},
]


@pytest.mark.timeout(60)
async def test_malformed_entries_are_skipped_live_and_in_replay(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    gw = gateway_factory(tail_size="10", replay_page="3")
    token = await asyncio.to_thread(gw.token)
    first = str(rclient.xadd(keys.events, encode_event(Notification(count=0))))  # type: ignore[arg-type]
    live = Recorder(f"{gw.url}/stream", token, first).start()
    # Open (and parked at the head) before anything is written: it reads them all live.
    await live.wait_for(lambda r: r.connects == 1)
    await asyncio.to_thread(wait_for, lambda: gw.metric("wxstream_gateway_connections") == 1)
    good: list[str] = []

    def write_all() -> None:
        for i, fields in enumerate([*HAND_WRITTEN, *random_entries(8)], start=1):
            rclient.xadd(keys.events, fields)  # type: ignore[arg-type]
            good.append(str(rclient.xadd(keys.events, encode_event(Notification(count=i)))))  # type: ignore[arg-type]

    await asyncio.to_thread(write_all)
    await live.wait_for(lambda r: r.ids[-1:] == good[-1:])
    # A late client replays all of it from Redis (the tail holds only 10 entries).
    late = Recorder(f"{gw.url}/stream", token, first).start()
    await late.wait_for(lambda r: r.ids[-1:] == good[-1:])
    await live.stop()
    await late.stop()
    extra = [(e.id, e.event, e.data[:80]) for e in live.events if e.id not in good]
    assert live.ids == good, extra
    assert late.ids == good
    assert {e.event for e in live.events + late.events} == {"notification"}
    assert (
        gw.metric("wxstream_gateway_malformed_entries_total") == len(HAND_WRITTEN) + RANDOM_ENTRIES
    )
    assert gw.metric("wxstream_gateway_reader_up") == 1
    assert gw.alive
    assert "malformed_entry_skipped" in gw.log_text()
