"""Gateway faults with real processes and a real Redis (AOF): kill -9 under a thousand
streaming clients, and a network stall between the gateway's reader and Redis."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import redis.asyncio as aredis
from fault_fixtures import Producer, Services, aof_redis, services, wait_status
from gateway_fixtures import GatewayProc
from procs import wait_for
from sse import Event, events
from swarm import Swarm, SwarmClient, raise_fd_limit
from tcp_proxy import TcpProxy

from shared.keys import Keys
from shared.local_redis import LocalRedis

__all__ = ["aof_redis", "services"]  # fixtures

CLIENTS = 1000
RATE = 100  # events per second
EVENTS = 1200  # twelve seconds of them
KILL_AT = 400  # the n after which gateway A is killed


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_kill_9_of_a_gateway_under_1000_clients_loses_nothing(
    services: Services, aof_redis: LocalRedis, keys: Keys
) -> None:
    """1,000 clients stream 100 events/s from gateway A; A is killed with SIGKILL. Half of
    them reconnect to gateway B, half to A once restarted; each ends with exactly the
    stream's sequence: 0 lost, 0 duplicated, 0 reordered, no reset."""
    assert raise_fd_limit(4 * CLIENTS) >= 2 * CLIENTS + 100
    limits = {"max_streams_per_client": str(2 * CLIENTS), "keepalive_seconds": "5"}
    a = services.gateway(aof_redis.url, **limits)
    b = services.gateway(aof_redis.url, **limits)
    token = a.token()  # both gateways share the admin secret, so the token works on both
    client = aredis.Redis.from_url(aof_redis.url, decode_responses=True)
    producer = Producer(client, keys)
    await producer.add(1)  # every client starts after this one
    killed = asyncio.Event()

    def target(c: SwarmClient) -> tuple[str, int]:
        if killed.is_set() and c.idx % 2 == 0:
            return "127.0.0.1", b.port
        return "127.0.0.1", a.port

    swarm = Swarm(CLIENTS, token, target, first_id=producer.id_of(1), first_n=2)
    began = time.monotonic()
    swarm.start()
    await asyncio.to_thread(
        wait_for, lambda: a.metric("wxstream_gateway_connections") == CLIENTS, timeout=30
    )
    connected_in = time.monotonic() - began

    async def restart_a() -> float:
        down_at = time.monotonic()
        a.start()
        await asyncio.to_thread(a.wait_http, f"{a.url}/readyz")
        return time.monotonic() - down_at

    await producer.run(KILL_AT, RATE, batch=2)
    killed.set()
    a.kill()
    restart = asyncio.create_task(restart_a())
    await producer.run(EVENTS, RATE, batch=2)
    a_down_seconds = await restart
    swarm.finish_at(EVENTS)
    await swarm.wait(45)
    await client.aclose()

    lost = sum(c.lost for c in swarm.clients)
    duplicated = sum(c.duplicated for c in swarm.clients)
    resets = sum(c.resets for c in swarm.clients)
    delivered = sum(c.received for c in swarm.clients)
    reconnected = sum(1 for c in swarm.clients if c.connects >= 2)
    print(
        f"\n{CLIENTS} clients, {EVENTS} events at {RATE}/s, kill -9 after event {KILL_AT}: "
        f"{delivered} deliveries, lost {lost}, duplicated/reordered {duplicated}, "
        f"resets {resets}; {reconnected} clients reconnected "
        f"({sum(c.connects for c in swarm.clients)} streams opened, "
        f"{sum(c.errors for c in swarm.clients)} connection errors while A was down "
        f"{a_down_seconds:.1f}s); all connected in {connected_in:.1f}s"
    )
    assert all(c.done for c in swarm.clients)
    assert (lost, duplicated, resets) == (0, 0, 0)
    assert delivered == CLIENTS * (EVENTS - 1)
    assert reconnected == CLIENTS  # every one of them lost its stream and came back
    # Both destinations took their half.
    assert (
        a.metric("wxstream_gateway_resumes_total", 'source="memory"')
        + a.metric("wxstream_gateway_resumes_total", 'source="redis"')
        >= CLIENTS // 2
    )
    assert (
        b.metric("wxstream_gateway_resumes_total", 'source="memory"')
        + b.metric("wxstream_gateway_resumes_total", 'source="redis"')
        >= CLIENTS // 2
    )


async def read_until(
    gw: GatewayProc, token: str, last_event_id: str, want: str, out: list[Event]
) -> None:
    async with httpx.AsyncClient() as http:
        async for event in events(
            http,
            f"{gw.url}/stream",
            last_event_id=last_event_id,
            headers={"Authorization": f"Bearer {token}"},
        ):
            out.append(event)
            if event.id == want:
                return


@pytest.mark.timeout(60)
async def test_stalled_redis_connection_is_detected_and_the_reader_recovers_without_restart(
    services: Services, aof_redis: LocalRedis, keys: Keys
) -> None:
    """The network between the gateway and Redis stops forwarding without closing: the
    reader's socket timeout notices, readiness goes false, and once bytes flow again the
    same process reads on and its open streams miss nothing."""
    with TcpProxy(aof_redis.port) as proxy:
        gw = services.gateway(proxy.url, redis_timeout_seconds="1", read_block_ms="200")
        token = gw.token()
        client = aredis.Redis.from_url(aof_redis.url, decode_responses=True)
        producer = Producer(client, keys)
        await producer.add(3)
        got: list[Event] = []
        reader = asyncio.create_task(
            read_until(gw, token, producer.id_of(1), producer.id_of(40), got)
        )
        await asyncio.to_thread(wait_for, lambda: len(got) == 2)

        proxy.stall()
        await producer.add(17)  # written while the gateway cannot see Redis
        await asyncio.to_thread(wait_status, gw.ops_url, 503, timeout=10, what="not ready")
        assert gw.metric("wxstream_gateway_reader_up") == 0
        assert len(got) == 2  # nothing crossed the stalled link
        stalled_pid = gw.proc.pid if gw.proc else None

        proxy.resume()
        await asyncio.to_thread(wait_status, gw.ops_url, 200, timeout=15, what="ready again")
        await producer.add(20)
        await asyncio.wait_for(reader, 20)
        await client.aclose()
    assert [e.id for e in got] == [producer.id_of(n) for n in range(2, 41)]
    assert gw.proc is not None
    assert gw.proc.pid == stalled_pid
    assert gw.alive
    assert "reader_redis_error" in gw.log_text()


def test_stalled_api_pool_answers_503_not_a_hang(
    services: Services, aof_redis: LocalRedis, keys: Keys
) -> None:
    """REST calls that need Redis while the link is stalled answer 503 with a JSON error
    after the timeout, and work again once it flows."""
    with TcpProxy(aof_redis.port) as proxy:
        gw = services.gateway(proxy.url, redis_timeout_seconds="1")
        auth = gw.auth()
        assert httpx.get(f"{gw.url}/api/messages", headers=auth).status_code == 200
        proxy.stall()
        began = time.monotonic()
        resp = httpx.post(f"{gw.url}/api/logout", headers=auth, timeout=30)
        took = time.monotonic() - began
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]
        assert took < 10, took
        proxy.resume()
        wait_for(
            lambda: httpx.get(f"{gw.url}/api/messages", headers=auth).status_code == 200,
            timeout=15,
        )
