"""Redis faults with every service as a real process: Redis (AOF, appendfsync everysec)
restarted cleanly and with kill -9 mid-stream, a stalled link to the notifier, a stream
Redis lost, and a failover to a replica without the newest writes.

Here the session's Redis is replaced by one of the test's own (``redis_url`` below), so the
login rig, ``rclient`` and the gateway factory all use it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import redis
import redis.asyncio as aredis
from fault_fixtures import (
    Producer,
    Recorder,
    Services,
    aof_redis,
    ready_status,
    services,
    stream_ids,
    wait_status,
)
from procs import wait_for
from tcp_proxy import TcpProxy

from shared.keys import Keys
from shared.local_redis import LocalRedis
from shared.messages import ChatMessage
from shared.streams import encode

if TYPE_CHECKING:
    from login_fixtures import LoginRig

__all__ = ["aof_redis", "services"]  # fixtures
pytest_plugins = ("login_fixtures",)


@pytest.fixture
def redis_url(aof_redis: LocalRedis) -> str:
    return aof_redis.url


def unread(client: redis.Redis, keys: Keys) -> int:
    return int(client.get(keys.unread) or 0)


def last_notified(client: redis.Redis, keys: Keys, below: int = 100_000) -> int | None:
    """The newest count the notifier published (producer test events count from 100000)."""
    for _, fields in client.xrevrange(keys.events, count=2000) or []:
        if fields and fields.get("event") == "notification":
            count = int(json.loads(fields["data"])["count"])
            if count < below:
                return count
    return None


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_redis_restarts_mid_stream_every_service_recovers_and_nothing_acked_is_lost(
    rig: LoginRig, services: Services, aof_redis: LocalRedis, keys: Keys
) -> None:
    """Redis restarted twice under a steady producer (100 events/s), once with SIGTERM and
    once with SIGKILL, while the login service holds a WeChat session, the notifier counts
    and a client streams from the gateway. Each service's /readyz says 503 during the
    outage and 200 after, without a restart of its own; every acknowledged XADD is still in
    the stream; the client sees the stream's exact sequence (no reset: nothing was lost);
    every message sent on the phone is stored once and counted once."""
    fast = {"redis_timeout_seconds": "1"}
    gw = services.gateway(aof_redis.url, read_block_ms="200", **fast)
    notifier = services.notifier(aof_redis.url, **fast)
    login = rig.start(WX_REDIS_TIMEOUT_SECONDS="1")
    rig.log_in()
    ops = {"gateway": gw.ops_url, "notifier": notifier.ops_url, "login": login.ops_url}
    pids = {p.module: p.proc.pid for p in (gw, notifier, login) if p.proc}

    client = aredis.Redis.from_url(aof_redis.url, decode_responses=True)
    sync = redis.Redis.from_url(aof_redis.url, decode_responses=True)
    seed = rig.last_id()
    recorder = Recorder(f"{gw.url}/stream", gw.token(), seed).start()

    # The producer keeps writing through the outages: a failed XADD is retried, a
    # confirmed one is recorded.
    acked: list[str] = []
    unsure = 0
    stop = asyncio.Event()

    async def produce() -> None:
        nonlocal unsure
        i = 100_000
        while not stop.is_set():
            try:
                entry_id = await client.xadd(
                    keys.events, {"event": "notification", "data": f'{{"count":{i}}}', "ts": "1"}
                )
                acked.append(str(entry_id))
                i += 1
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                unsure += 1  # may or may not have been applied: the stream says
            await asyncio.sleep(0.01)

    async def flowing(more: int) -> None:
        mark = len(acked) + more
        await asyncio.to_thread(wait_for, lambda: len(acked) >= mark, timeout=10)

    producing = asyncio.create_task(produce())
    sent: list[str] = [rig.phone.message(kind="friend", text=f"before {i} 🌧") for i in range(3)]
    await asyncio.to_thread(wait_for, lambda: unread(sync, keys) == 3, timeout=15)

    outages: dict[str, float] = {}
    for hard in (False, True):
        label = "kill -9" if hard else "SIGTERM"
        # Under load: a couple of seconds of events flow first.
        await flowing(200)
        began = time.monotonic()
        await asyncio.to_thread(aof_redis.stop, hard=hard)
        for name, url in ops.items():
            await asyncio.to_thread(wait_status, url, 503, timeout=10, what=f"{name} not ready")
        # A message that arrives while Redis is down waits in the login service's retry.
        sent.append(rig.phone.message(kind="group", text=f"during {label} 🔌"))
        await asyncio.to_thread(aof_redis.start)
        for name, url in ops.items():
            await asyncio.to_thread(wait_status, url, 200, timeout=20, what=f"{name} ready")
        outages[label] = time.monotonic() - began
        sent.append(rig.phone.message(kind="friend", text=f"after {label} ☀"))
        await asyncio.to_thread(
            wait_for, lambda: unread(sync, keys) == len(sent), timeout=20, what="counted"
        )

    await flowing(200)
    stop.set()
    await producing
    final = stream_ids(sync, keys.events)
    await recorder.wait_for(lambda r: bool(r.ids) and r.ids[-1] == final[-1])
    await recorder.stop()
    await client.aclose()

    # Nothing acknowledged was lost, and the client saw exactly the stream.
    assert set(acked) <= set(final)
    assert recorder.resets == []
    assert recorder.ids == final[final.index(seed) + 1 :]
    # Every message once in the messages stream, counted once, published.
    stored = [ChatMessage.model_validate_json(f["data"]).id for _, f in rig.entries(keys.messages)]
    assert sorted(stored) == sorted(set(sent)), (stored, sent)
    assert unread(sync, keys) == len(sent)
    await asyncio.to_thread(wait_for, lambda: last_notified(sync, keys) == len(sent))
    # Recovered in place: the same processes, with backoff and readiness doing the work.
    assert {p.module: p.proc.pid for p in (gw, notifier, login) if p.proc} == pids
    assert "reader_redis_error" in gw.log_text()
    assert "redis_unavailable" in notifier.log_text()
    assert "redis_unreachable" in login.log_text()
    sync.close()
    print(
        f"\nRedis restarts {outages}: {len(acked)} XADDs acknowledged, 0 lost "
        f"({unsure} attempts failed during the outages); client saw {len(recorder.ids)} "
        f"events, 0 resets; {len(sent)} messages stored and counted once; "
        f"stream refusals while down: {recorder.refusals}"
    )


def test_stalled_link_to_the_notifier_is_detected_and_recovers_without_restart(
    services: Services, aof_redis: LocalRedis, keys: Keys, rclient: redis.Redis
) -> None:
    """The notifier's connection stops forwarding without closing: its socket timeout
    notices, /readyz answers 503, and once the link flows the same process counts on."""
    with TcpProxy(aof_redis.port) as proxy:
        notifier = services.notifier(proxy.url, redis_timeout_seconds="1")
        pid = notifier.proc.pid if notifier.proc else None

        def add(message_ids: list[str]) -> None:
            for message_id in message_ids:
                message = ChatMessage(
                    id=message_id, chat="friend", chat_id="@f", chat_name="f", type="text",
                    text="x", created_at=1,
                )  # fmt: skip
                rclient.xadd(keys.messages, encode("message", message))  # type: ignore[arg-type]

        add(["m1", "m2"])
        wait_for(lambda: unread(rclient, keys) == 2, what="counted before the stall")
        proxy.stall()
        add(["m3", "m4", "m5"])
        wait_status(notifier.ops_url, 503, timeout=15, what="notifier notices the stall")
        assert unread(rclient, keys) == 2
        proxy.resume()
        wait_status(notifier.ops_url, 200, timeout=15, what="notifier ready again")
        wait_for(lambda: last_notified(rclient, keys) == 5, timeout=15, what="counted after")
    assert notifier.proc is not None
    assert notifier.proc.pid == pid
    assert notifier.alive
    assert "TimeoutError" in notifier.log_text()


# --- where a guarantee cannot hold: reset, not a lie ----------------------------------------


@pytest.fixture
def volatile_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A Redis without persistence: a restart comes back empty."""
    server = LocalRedis(tmp_path / "redis-volatile", appendonly=False)
    server.start()
    yield server
    server.stop()


async def test_redis_restarted_without_persistence_gives_reset_never_a_silent_gap(
    services: Services, volatile_redis: LocalRedis, keys: Keys
) -> None:
    """The stream is gone after the restart: the open stream gets ``reset`` (stream_lost),
    a client resuming from an old id gets ``reset`` too, and both go on with new events."""
    gw = services.gateway(volatile_redis.url, read_block_ms="200", redis_timeout_seconds="1")
    token = gw.token()
    client = aredis.Redis.from_url(volatile_redis.url, decode_responses=True)
    before = Producer(client, keys, base_ms=1_000_000)
    await before.add(10)
    open_stream = Recorder(f"{gw.url}/stream", token, before.id_of(2)).start()
    await open_stream.wait_for(lambda r: len(r.ids) == 8)

    # Back at once, empty: quick enough for the client's reconnect retry to hide it.
    await asyncio.to_thread(volatile_redis.restart, hard=True)
    await client.aclose()
    client = aredis.Redis.from_url(volatile_redis.url, decode_responses=True)
    after = Producer(client, keys, base_ms=2_000_000)
    await after.add(3)
    await open_stream.wait_for(lambda r: bool(r.ids) and r.ids[-1] == after.id_of(3))
    resumed = Recorder(f"{gw.url}/stream", token, before.id_of(5)).start()
    await resumed.wait_for(lambda r: bool(r.ids) and r.ids[-1] == after.id_of(3))
    await open_stream.stop()
    await resumed.stop()
    await client.aclose()

    events = [(e.event, e.id) for e in open_stream.events]
    cut = events.index(("reset", None))
    assert events[:cut] == [("notification", before.id_of(n)) for n in range(3, 11)]
    assert open_stream.resets[0].json() == {"reason": "stream_lost"}
    # Then the new stream's state and what follows: its newest events, in order.
    tail = [i for _, i in events[cut + 1 :]]
    assert tail
    assert tail == [after.id_of(n) for n in (1, 2, 3)][-len(tail) :]
    assert resumed.events[0].event == "reset"
    assert resumed.events[0].json()["reason"] in ("unknown_id", "trimmed")
    assert before.id_of(6) not in resumed.ids  # nothing from the old stream leaks through


async def test_failover_to_a_replica_without_the_newest_writes_gives_reset(
    services: Services, aof_redis: LocalRedis, tmp_path: Path, keys: Keys
) -> None:
    """What cannot hold, shown: the gateway reads through an address that fails over from
    the primary to a replica that missed the last writes (replication was behind). Clients
    saw events the new primary never had; they get ``reset`` and the new state, never a
    silent hole, and new events flow from the new primary."""
    replica = LocalRedis(tmp_path / "replica", appendonly=True)
    replica.start()
    primary = redis.Redis.from_url(aof_redis.url, decode_responses=True)
    promoted = redis.Redis.from_url(replica.url, decode_responses=True)
    client = aredis.Redis.from_url(aof_redis.url, decode_responses=True)
    try:
        promoted.replicaof("127.0.0.1", aof_redis.port)
        with TcpProxy(aof_redis.port) as proxy:
            gw = services.gateway(proxy.url, read_block_ms="200", redis_timeout_seconds="1")
            token = gw.token()
            producer = Producer(client, keys, base_ms=1_000_000)
            await producer.add(5)
            await asyncio.to_thread(
                wait_for, lambda: promoted.xlen(keys.events) == 5, what="replica in sync"
            )
            promoted.replicaof("NO", "ONE")  # replication stops here ...
            await producer.add(5)  # ... so these five exist only on the old primary
            live = Recorder(f"{gw.url}/stream", token, producer.id_of(1)).start()
            await live.wait_for(lambda r: r.ids[-1:] == [producer.id_of(10)])

            # Failover: the address now leads to the replica; the old primary is gone.
            proxy.retarget(replica.port)
            proxy.cut()
            await asyncio.to_thread(aof_redis.stop, hard=True)
            await asyncio.to_thread(wait_status, gw.ops_url, 200)
            new_id = str(
                promoted.xadd(
                    keys.events, {"event": "notification", "data": '{"count":99}', "ts": "1"}
                )
            )
            await live.wait_for(lambda r: r.ids[-1:] == [new_id])
            late = Recorder(f"{gw.url}/stream", token, producer.id_of(8)).start()
            await late.wait_for(lambda r: r.ids[-1:] == [new_id])
            await live.stop()
            await late.stop()
    finally:
        await client.aclose()
        primary.close()
        promoted.close()
        replica.stop()

    assert live.ids[:9] == [producer.id_of(n) for n in range(2, 11)]
    assert [e.json() for e in live.resets] == [{"reason": "stream_lost"}]
    after_reset = live.events[live.events.index(live.resets[0]) + 1 :]
    # The state (the newest entry the replica has), then the new event: nothing of 6..10.
    assert [e.id for e in after_reset] in (
        [producer.id_of(5), new_id],
        [new_id],
    ), [(e.event, e.id) for e in after_reset]
    assert late.events[0].event == "reset"
    assert producer.id_of(9) not in late.ids


async def test_stream_request_while_redis_is_down_is_refused_cleanly(
    services: Services, aof_redis: LocalRedis, keys: Keys
) -> None:
    """A resume that needs Redis while it is down: a 503 with a JSON error (the browser
    retries), not a broken response."""
    gw = services.gateway(aof_redis.url, read_block_ms="200", redis_timeout_seconds="1")
    token = gw.token()
    client = aredis.Redis.from_url(aof_redis.url, decode_responses=True)
    producer = Producer(client, keys, base_ms=1_000_000)
    await producer.add(3)
    await client.aclose()
    await asyncio.to_thread(aof_redis.stop)
    await asyncio.to_thread(wait_status, gw.ops_url, 503)
    async with httpx.AsyncClient() as http:
        resp = await http.get(
            f"{gw.url}/stream",
            headers={"Authorization": f"Bearer {token}", "Last-Event-ID": "999-0"},
        )
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]
    assert "Traceback" not in gw.log_text()
    assert ready_status(gw.ops_url) == 503
