"""Regressions found in review, each pinned against real Redis (and a real gateway where the
behaviour needs one)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import redis
import redis.asyncio as aredis
from gateway_fixtures import GatewayFactory
from procs import wait_for
from sse import Event, events
from test_gateway_stream import collect, produce

from services.gateway.hub import Client, Hub
from services.gateway.replay import HistoryGap, Plan, history, plan_start, raw_view
from shared.events import LoggedIn, Notification, User
from shared.keys import Keys
from shared.redis_client import async_client
from shared.streams import encode_event, parse_stream_id


@pytest.fixture
async def aclient(redis_url: str) -> AsyncIterator[aredis.Redis]:
    client = async_client(redis_url, timeout=5.0, block_seconds=1.0)
    yield client
    await client.aclose()


async def _no_send(message: dict[str, object]) -> None:
    raise AssertionError("nothing is written in this test")


def make_hub(client: aredis.Redis, keys: Keys, tail_size: int = 100) -> Hub:
    return Hub(
        client,
        keys.events,
        tail_size=tail_size,
        max_lag=tail_size,
        read_batch=100,
        read_block_ms=100,
        keepalive_seconds=15,
    )


async def test_history_trimmed_between_pages_is_a_gap_not_a_hole(
    aclient: aredis.Redis, rclient: redis.Redis, keys: Keys
) -> None:
    ids = produce(rclient, keys, 300)
    plan = Plan("redis", after=ids[10], until=ids[-1])
    pages = history(raw_view(aclient), keys.events, plan, 50)
    first = await anext(pages)
    assert first.count(b"id: ") == 50
    rclient.xtrim(keys.events, maxlen=200, approximate=False)
    with pytest.raises(HistoryGap):
        await anext(pages)


async def test_resume_on_a_hub_that_has_read_nothing_yet_does_not_repeat_the_entry(
    aclient: aredis.Redis, rclient: redis.Redis, keys: Keys
) -> None:
    """The hub's tail is empty (just started); the client's id is already in Redis."""
    hub = make_hub(aclient, keys)
    (entry_id,) = produce(rclient, keys, 1)
    client = Client(addr="test", task=None, send=_no_send)
    snap = hub.register(client)
    assert snap.head_sid is None
    planning = asyncio.create_task(
        plan_start(hub, aclient, client, snap, parse_stream_id(entry_id))
    )
    await asyncio.sleep(0.05)
    assert not planning.done()  # waits for the reader to catch up
    fields: dict[str, str] = rclient.xrange(keys.events)[0][1]  # type: ignore[index,assignment]
    hub._append([(entry_id, fields)])
    plan = await asyncio.wait_for(planning, 2)
    assert plan.source == "memory"
    assert hub.chunk_after(client.cursor) is None  # nothing to send again


async def test_reset_after_stream_loss_carries_the_new_login_even_beyond_the_tail(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    gw = gateway_factory(tail_size="10")
    produce(rclient, keys, 3)
    got: list[Event] = []
    async with httpx.AsyncClient() as client:

        async def read() -> None:
            async for event in events(client, f"{gw.url}/stream", headers=gw.auth()):
                got.append(event)
                if event.event == "reset":
                    break
            async for event in events(client, f"{gw.url}/stream", headers=gw.auth()):
                got.append(event)
                if len(got) > 20:
                    break

        reader = asyncio.create_task(read())
        await asyncio.to_thread(wait_for, lambda: gw.metric("wxstream_gateway_connections") == 1)
        user = User(id="@new", name="新的 🌱")
        # The stream comes back with ids below the hub's last one (a restored backup, a
        # replica with another clock): the hub sees its last entry gone and resets.
        pipe = rclient.pipeline(transaction=True)
        pipe.delete(keys.events)
        pipe.xadd(keys.events, encode_event(LoggedIn(user=user)), id="1-1")  # type: ignore[arg-type]
        for i in range(25):
            pipe.xadd(keys.events, encode_event(Notification(count=i)), id=f"1-{i + 2}")  # type: ignore[arg-type]
        new_ids = pipe.execute()[1:]
        await asyncio.to_thread(wait_for, lambda: any(e.event == "reset" for e in got), timeout=10)
        reset_at = next(i for i, e in enumerate(got) if e.event == "reset")
        await asyncio.to_thread(wait_for, lambda: len(got) >= reset_at + 3, timeout=10)
        reader.cancel()
    after = got[reset_at + 1 : reset_at + 3]
    assert [(e.event, e.id) for e in after] == [
        ("login", new_ids[0]),
        ("notification", new_ids[-1]),
    ]


def test_a_non_ascii_token_is_401_not_500(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory()
    for path in ("/api/state", "/stream"):
        with socket.create_connection(("127.0.0.1", gw.port)) as sock:
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode()
                + b"Authorization: Bearer v1.1.abc.d\xe9f\r\nConnection: close\r\n\r\n"
            )
            status = sock.recv(4096).split(b"\r\n", 1)[0]
        assert b" 401 " in status, (path, status)


async def test_collect_helper_still_sees_plain_resumes(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    """A resume right after a restart of the gateway (empty-tail path) has no duplicate."""
    ids = produce(rclient, keys, 5)
    gw = gateway_factory()
    got = await collect(gw, 3, last_event_id=ids[1])
    assert [e.id for e in got] == ids[2:]


class Recorder:
    """An ASGI ``send`` that keeps what it was given."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def send(self, message: dict[str, object]) -> None:
        body = message.get("body", b"")
        assert isinstance(body, bytes)
        self.bodies.append(body)


async def test_a_batch_that_trims_the_tail_past_a_parked_client_cuts_it_never_skips(
    aclient: aredis.Redis, rclient: redis.Redis, keys: Keys
) -> None:
    """A parked client whose next event was trimmed away in one batch is cut as slow (it
    resumes from Redis), not sent a later slice of the tail as if nothing were missing."""
    hub = make_hub(aclient, keys, tail_size=10)
    assert hub.read_batch == 10  # the reader itself never reads more than the tail holds
    produce(rclient, keys, 40)
    entries: list[tuple[str, dict[str, str]]] = rclient.xrange(keys.events)  # type: ignore[assignment]
    hub._append(entries[:5])
    recorder = Recorder()
    client = Client(addr="test", task=None, send=recorder.send)
    hub.register(client)
    assert await hub.follow(client) is None  # parked at the head
    hub._append(entries[5:40])  # 35 at once: the tail keeps only the newest
    await hub._broadcast()
    assert client.closing == "slow"
    assert recorder.bodies == []


async def test_a_resume_from_an_entry_the_reader_skipped_resets_instead_of_hanging(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    """The client's id is real but malformed (the reader skipped it), and the stream stays
    quiet: the start waits for the reader a bounded time, then says ``reset``."""
    produce(rclient, keys, 3)
    bad = str(rclient.xadd(keys.events, {"event": "message", "data": "{not json", "ts": "1"}))
    gw = gateway_factory()
    got = await collect(gw, 1, last_event_id=bad, seconds=8)
    assert got[0].event == "reset"


async def test_a_client_leaving_mid_replay_stops_the_replay(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys, redis_url: str
) -> None:
    """Nothing tells a server that a client left while it only writes, so the gateway
    listens for the disconnect during a replay and stops paging Redis."""
    ids = produce(rclient, keys, 1)
    for _ in range(20):
        produce(rclient, keys, 1000)
    gw = gateway_factory(replay_page="20", tail_size="100", max_lag_events="100")
    before = _xrange_calls(rclient)
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(
            f"GET /stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {gw.token()}\r\n"
            f"Last-Event-ID: {ids[0]}\r\n\r\n".encode()
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    await asyncio.to_thread(
        wait_for, lambda: gw.metric("wxstream_gateway_disconnects_total", 'reason="client"') == 1
    )
    # The whole replay is 1,000 pages of 20; the client left after the first few.
    assert _xrange_calls(rclient) - before < 500


def _xrange_calls(rclient: redis.Redis) -> int:
    stats: dict[str, dict[str, int]] = rclient.info("commandstats")
    return int(stats.get("cmdstat_xrange", {}).get("calls", 0))
