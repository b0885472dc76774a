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
