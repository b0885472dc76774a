"""The gateway's stream against real Redis and a real uvicorn process: state on connect,
resume from memory and from Redis, reset, slow clients, limits, drain."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import httpx
import pytest
import redis
from gateway_fixtures import GatewayFactory, GatewayProc
from procs import wait_for
from sse import Event, Parser, events

from shared.events import LoggedIn, Notification, ScanQrCode, User
from shared.keys import Keys
from shared.streams import encode_event


def produce(rclient: redis.Redis, keys: Keys, n: int, start: int = 0) -> list[str]:
    """Append ``n`` notification events; returns their entry ids."""
    pipe = rclient.pipeline(transaction=False)
    for i in range(start, start + n):
        pipe.xadd(keys.events, encode_event(Notification(count=i)))  # type: ignore[arg-type]
    return [str(x) for x in pipe.execute()]


async def collect(
    gw: GatewayProc,
    n: int,
    *,
    last_event_id: str | None = None,
    seconds: float = 10.0,
    headers: dict[str, str] | None = None,
) -> list[Event]:
    out: list[Event] = []
    async with httpx.AsyncClient() as client:

        async def run() -> None:
            async for event in events(
                client,
                f"{gw.url}/stream",
                last_event_id=last_event_id,
                headers=headers or gw.auth(),
            ):
                out.append(event)
                if len(out) >= n:
                    return

        await asyncio.wait_for(run(), seconds)
    return out


def ids(evs: list[Event]) -> list[str | None]:
    return [e.id for e in evs]


def test_stream_without_session_is_401_json(gateway: GatewayProc) -> None:
    resp = httpx.get(f"{gateway.url}/stream")
    assert resp.status_code == 401
    assert "error" in resp.json()


async def test_new_client_gets_latest_login_and_notification_then_live(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    user = User(id="@me", name="小明 🐱", avatar=None)
    first = rclient.xadd(keys.events, encode_event(ScanQrCode(uuid="u1", extra="QUJD")))  # type: ignore[arg-type]
    produce(rclient, keys, 3)
    login = rclient.xadd(keys.events, encode_event(LoggedIn(user=user)))  # type: ignore[arg-type]
    last_count = produce(rclient, keys, 1, start=7)[0]
    gw = gateway_factory()

    async def scenario() -> list[Event]:
        task = asyncio.create_task(collect(gw, 3))
        await asyncio.to_thread(wait_for, lambda: gw.metric("wxstream_gateway_connections") == 1)
        live = produce(rclient, keys, 1, start=8)
        got = await task
        assert got[2].id == live[0]
        return got

    got = await scenario()
    assert [(e.event, e.id) for e in got[:2]] == [("login", login), ("notification", last_count)]
    assert got[0].json()["user"]["name"] == "小明 🐱"
    assert first not in ids(got)


async def test_resume_from_memory_gets_exactly_the_later_events(
    gateway: GatewayProc, rclient: redis.Redis, keys: Keys
) -> None:
    produced = produce(rclient, keys, 20)
    got = await collect(gateway, 12, last_event_id=produced[7])
    assert ids(got) == produced[8:20]
    assert gateway.metric("wxstream_gateway_resumes_total", 'source="memory"') >= 1


async def test_resume_across_the_memory_redis_boundary(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    gw = gateway_factory(tail_size="10", replay_page="7")
    produced = produce(rclient, keys, 100)
    wait_for(lambda: gw.metric("wxstream_gateway_tail_events") >= 10)
    got = await collect(gw, 95, last_event_id=produced[4])
    assert ids(got) == produced[5:]
    assert gw.metric("wxstream_gateway_resumes_total", 'source="redis"') == 1


async def test_resume_in_the_tail_but_too_far_behind_replays_from_redis(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    """Regression: such a client used to be cut off as slow at once, and again on every
    reconnect, never making progress."""
    gw = gateway_factory(tail_size="100", max_lag_events="10")
    produced = produce(rclient, keys, 50)
    wait_for(lambda: gw.metric("wxstream_gateway_tail_events") == 50)
    got = await collect(gw, 44, last_event_id=produced[5])
    assert ids(got) == produced[6:]
    assert gw.metric("wxstream_gateway_resumes_total", 'source="redis"') == 1


async def test_resume_while_events_keep_coming_has_no_gap_and_no_duplicate(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    """History read from Redis while the live tail moves on: joined exactly once. (The tail
    is large enough that the client is not cut off for falling behind meanwhile.)"""
    gw = gateway_factory(tail_size="100", replay_page="3")
    produced = produce(rclient, keys, 300)
    stop = asyncio.Event()

    async def producer() -> None:
        i = 1000
        while not stop.is_set():
            produced.extend(produce(rclient, keys, 2, start=i))
            i += 2
            await asyncio.sleep(0.002)

    prod = asyncio.create_task(producer())
    got = await collect(gw, 500, last_event_id=produced[0])
    stop.set()
    await prod
    assert gw.metric("wxstream_gateway_resumes_total", 'source="redis"') == 1
    assert ids(got) == produced[1:501]


async def test_resume_after_trim_sends_reset_then_state(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    gw = gateway_factory(tail_size="10")
    old = produce(rclient, keys, 50)
    rclient.xtrim(keys.events, maxlen=20, approximate=False)
    got = await collect(gw, 2, last_event_id=old[3])
    assert got[0].event == "reset"
    assert got[0].id is None
    assert got[0].json() == {"reason": "trimmed"}
    assert (got[1].event, got[1].id) == ("notification", old[-1])


async def test_id_from_the_future_resets(
    gateway: GatewayProc, rclient: redis.Redis, keys: Keys
) -> None:
    produce(rclient, keys, 3)
    got = await collect(gateway, 1, last_event_id="99999999999999-0")
    assert got[0].event == "reset"


async def test_unknown_id_inside_the_tail_resets(
    gateway: GatewayProc, rclient: redis.Redis, keys: Keys
) -> None:
    produced = produce(rclient, keys, 3)
    ms, seq = produced[1].split("-")
    got = await collect(gateway, 1, last_event_id=f"{ms}-{int(seq) + 7}")
    assert got[0].event == "reset"


@pytest.mark.parametrize(
    "bad", ["garbage", "1-2-3", "-1", "1" * 50 + "-0", "١٢٣-0", "5-00", "01-0"]
)
def test_malformed_last_event_id_is_400_json(gateway: GatewayProc, bad: str) -> None:
    resp = httpx.get(f"{gateway.url}/stream", params={"lastEventId": bad}, headers=gateway.auth())
    assert resp.status_code == 400
    assert "stream id" in resp.json()["error"]


async def test_deleted_and_recreated_stream_sends_reset_to_open_streams(
    gateway: GatewayProc, rclient: redis.Redis, keys: Keys
) -> None:
    before = produce(rclient, keys, 5)
    got: list[Event] = []
    async with httpx.AsyncClient() as client:

        async def read() -> None:
            async for event in events(
                client, f"{gateway.url}/stream", last_event_id=before[-1], headers=gateway.auth()
            ):
                got.append(event)
                if event.event == "reset":
                    return

        reader = asyncio.create_task(read())
        await asyncio.to_thread(
            wait_for, lambda: gateway.metric("wxstream_gateway_connections") == 1
        )
        rclient.delete(keys.events)
        await asyncio.wait_for(reader, 10)
    assert got[-1].json() == {"reason": "stream_lost"}
    after = produce(rclient, keys, 2, start=100)
    # An id from the lost stream cannot resume: reset, then the new state.
    again = await collect(gateway, 2, last_event_id=before[2])
    assert again[0].event == "reset"
    assert again[1].id == after[-1]


async def test_many_clients_disconnecting_at_random_points_each_see_the_exact_sequence(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    """Property-style: 25 clients drop at random points and resume (from memory or Redis,
    the tail is small) while events keep arriving; each ends with the stream's exact ids."""
    gw = gateway_factory(tail_size="40", replay_page="16")
    total = 400
    produced = produce(rclient, keys, 1)
    rng = random.Random(1234)
    token = gw.token()

    async def producer() -> None:
        for i in range(1, total):
            produced.extend(produce(rclient, keys, 1, start=i))
            if i % 4 == 0:
                await asyncio.sleep(0.003)

    async def client_run(seed: int) -> list[str]:
        local = random.Random(seed)
        seen: list[str] = []
        await asyncio.sleep(local.random() * 0.2)
        async with httpx.AsyncClient() as client:
            last: str | None = produced[0]
            seen.append(produced[0])
            while len(seen) < total:
                budget = local.randint(1, 60)
                stream = events(
                    client,
                    f"{gw.url}/stream",
                    last_event_id=last,
                    headers={"Authorization": f"Bearer {token}"},
                )
                try:
                    async for event in stream:
                        assert event.event == "notification", event
                        assert event.id is not None
                        seen.append(event.id)
                        last = event.id
                        budget -= 1
                        if budget == 0 or len(seen) >= total:
                            break
                except httpx.TransportError:
                    # Cut off for falling behind the small tail: reconnect, as a browser does.
                    pass
                finally:
                    await stream.aclose()
                if local.random() < 0.3:
                    await asyncio.sleep(local.random() * 0.05)
        return seen

    prod = asyncio.create_task(producer())
    results = await asyncio.wait_for(
        asyncio.gather(*(client_run(rng.randint(0, 10**9)) for _ in range(25))), 60
    )
    await prod
    for seen in results:
        assert seen == produced[:total]
    assert gw.metric("wxstream_gateway_resumes_total", 'source="redis"') > 0
    assert gw.metric("wxstream_gateway_resumes_total", 'source="memory"') > 0


async def test_retry_hint_keepalives_and_headers(gateway: GatewayProc) -> None:
    parser = Parser()
    async with (
        httpx.AsyncClient() as client,
        client.stream("GET", f"{gateway.url}/stream", headers=gateway.auth()) as resp,
    ):
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["cache-control"].startswith("no-cache")
        assert resp.headers["x-accel-buffering"] == "no"
        assert resp.headers.get("content-encoding", "identity") == "identity"
        async for text in resp.aiter_text():
            assert parser.feed(text) == []  # nothing but control lines on an empty stream
            if parser.comments >= 2:
                break
    assert parser.retry is not None
    assert 2000 <= parser.retry <= 5000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_clients_are_cut_off_and_memory_stays_flat(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    """Five clients that never read: each is cut off once it is 200 events behind, and the
    gateway does not buffer what they did not read (12 MB each were sent their way)."""
    gw = gateway_factory(max_lag_events="200", tail_size="400")
    assert gw.proc is not None
    token = gw.token()
    socks = []
    for _ in range(5):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", gw.port))
        sock.sendall(
            f"GET /stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        socks.append(sock)
    wait_for(lambda: gw.metric("wxstream_gateway_connections") == 5)
    rss_before = rss_kib(gw.proc.pid)
    big = "x" * 4000
    for _ in range(30):
        pipe = rclient.pipeline(transaction=False)
        for i in range(100):
            pipe.xadd(
                keys.events,
                encode_event(ScanQrCode(uuid=f"u{i}", extra=big)),  # type: ignore[arg-type]
                maxlen=1000,
            )
        pipe.execute()
    wait_for(lambda: gw.metric("wxstream_gateway_disconnects_total", 'reason="slow"') == 5)
    wait_for(lambda: gw.metric("wxstream_gateway_connections") == 0)
    growth_mib = (rss_kib(gw.proc.pid) - rss_before) / 1024
    # The tail itself may hold up to 800 such events (~3 MB); 5 x 12 MB were not kept.
    assert growth_mib < 20, growth_mib
    for sock in socks:
        sock.close()


async def test_the_tail_is_bounded_in_bytes_and_resumes_past_it_come_from_redis(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    """300 events of ~10 KB (3 MB) with a 1 MiB byte bound: the tail keeps at most twice
    the bound, and a resume from an event it dropped is replayed from Redis, exactly."""
    gw = gateway_factory(tail_max_bytes=str(1024 * 1024))
    big = "x" * 10_000
    pipe = rclient.pipeline(transaction=False)
    for i in range(300):
        pipe.xadd(keys.events, encode_event(ScanQrCode(uuid=f"u{i}", extra=big)))  # type: ignore[arg-type]
    produced = [str(x) for x in pipe.execute()]
    # The reader has read them all once the newest comes from memory.
    assert ids(await collect(gw, 1, last_event_id=produced[-2])) == produced[-1:]
    assert 0 < gw.metric("wxstream_gateway_tail_bytes") <= 2 * 1024 * 1024
    assert gw.metric("wxstream_gateway_tail_events") < 300
    got = await collect(gw, 289, last_event_id=produced[10])
    assert ids(got) == produced[11:]
    assert gw.metric("wxstream_gateway_resumes_total", 'source="redis"') == 1


def dechunk(raw: bytes) -> bytes:
    """The body of an HTTP/1.1 response with chunked transfer encoding (complete chunks)."""
    _, _, rest = raw.partition(b"\r\n\r\n")
    out = bytearray()
    while rest:
        size_line, sep, tail = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0 or len(tail) < size + 2:
            break
        out += tail[:size]
        rest = tail[size + 2 :]
    return bytes(out)


async def test_a_client_that_stops_reading_for_a_while_gets_everything_once_others_wait_not(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    """One client stops reading until its socket is full (the hub's write finds it paused
    and the client's own task takes over), then reads again: it gets every event exactly
    once, in order, and is never cut; a client beside it got everything meanwhile."""
    gw = gateway_factory(max_lag_events="5000", tail_size="10000")
    (seed,) = produce(rclient, keys, 1)
    token = gw.token()
    with socket.socket() as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", gw.port))
        slow.sendall(
            f"GET /stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Last-Event-ID: {seed}\r\n\r\n".encode()
        )
        n = 2000
        fast = asyncio.create_task(collect(gw, n, last_event_id=seed, seconds=60))
        await asyncio.to_thread(wait_for, lambda: gw.metric("wxstream_gateway_connections") == 2)
        big = "x" * 4000
        produced: list[str] = []
        for _ in range(n // 100):
            pipe = rclient.pipeline(transaction=False)
            for i in range(100):
                pipe.xadd(keys.events, encode_event(ScanQrCode(uuid=f"u{i}", extra=big)))  # type: ignore[arg-type]
            produced += [str(x) for x in pipe.execute()]
        got_fast = await fast
        assert ids(got_fast) == produced
        assert gw.metric("wxstream_gateway_paused_writes_total") >= 1

        def read_all() -> list[str | None]:
            raw = b""
            slow.settimeout(20)
            marker = f"id: {produced[-1]}\n".encode()
            seen = False
            while True:
                data = slow.recv(1 << 20)
                assert data, "the slow client's stream ended early"
                raw += data
                seen = seen or marker in raw[-len(data) - len(marker) :]
                if seen:
                    got = [e.id for e in Parser().feed(dechunk(raw).decode())]
                    if got and got[-1] == produced[-1]:
                        return got

        assert await asyncio.to_thread(read_all) == produced
        assert gw.metric("wxstream_gateway_disconnects_total", 'reason="slow"') == 0


def test_caps_answer_429_and_503_with_retry_after(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(max_streams_per_client="2", max_streams="3")
    token = gw.token()
    socks = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(
            f"GET /stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        socks.append(s)
    wait_for(lambda: gw.metric("wxstream_gateway_connections") == 2)
    resp = httpx.get(f"{gw.url}/stream", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) > 0
    assert "error" in resp.json()
    for s in socks:
        s.close()
    wait_for(lambda: gw.metric("wxstream_gateway_connections") == 0)


async def test_sigterm_drains_and_clients_resume_losslessly_on_a_second_gateway(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    first = gateway_factory(drain_seconds="1")
    second = gateway_factory()
    produced = produce(rclient, keys, 1)
    total = 300

    async def producer() -> None:
        for i in range(1, total):
            produced.extend(produce(rclient, keys, 1, start=i))
            await asyncio.sleep(0.005)

    async def client_run() -> tuple[list[str], int]:
        seen = [produced[0]]
        last = produced[0]
        ended_on_first = 0
        async with httpx.AsyncClient() as client:
            for gw in (first, second):
                async for event in events(
                    client, f"{gw.url}/stream", last_event_id=last, headers=gw.auth()
                ):
                    assert event.id is not None
                    seen.append(event.id)
                    last = event.id
                    if len(seen) >= total:
                        break
                if gw is first:
                    ended_on_first = len(seen)
        return seen, ended_on_first

    prod = asyncio.create_task(producer())
    clients = [asyncio.create_task(client_run()) for _ in range(10)]
    await asyncio.to_thread(wait_for, lambda: first.metric("wxstream_gateway_connections") == 10)
    await asyncio.sleep(0.3)
    assert first.proc is not None
    first.proc.send_signal(15)
    # Readiness goes false at once, new streams are refused.
    await asyncio.to_thread(
        wait_for, lambda: httpx.get(f"{first.url}/readyz").status_code == 503, timeout=5
    )
    results = await asyncio.wait_for(asyncio.gather(*clients), 60)
    await prod
    assert await asyncio.to_thread(first.proc.wait, 10) == 0
    for seen, ended_on_first in results:
        assert seen == produced[:total]
        assert 1 < ended_on_first < total
