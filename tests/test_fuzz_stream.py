"""Hostile clients of the gateway: fuzzed ``Last-Event-ID`` and queries (hypothesis),
oversized headers and bodies, slow-loris connections, thousands of streams from one address.
Every answer is a clear 4xx/429/503 (JSON from the gateway), memory stays bounded, and
other clients are served as before."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from gateway_fixtures import GatewayFactory, GatewayProc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from procs import wait_for
from swarm import raise_fd_limit

from services.gateway.limits import MAX_BODY_BYTES, MAX_HEADER_BYTES
from shared.events import Notification
from shared.keys import Keys
from shared.streams import encode_event

FRAME = re.compile(rb"^(?:id: (\S+)|event: (\S+))\r?$", re.MULTILINE)


def rss_mib(gw: GatewayProc) -> float:
    assert gw.proc is not None
    for line in Path(f"/proc/{gw.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def raw_request(
    port: int,
    request: bytes,
    *,
    source: str = "127.0.0.1",
    want: bytes = b"\r\n\r\n",
    seconds: float = 5.0,
) -> bytes:
    """Send ``request`` and read until ``want`` appears after the head (or the deadline)."""
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=seconds, source_address=(source, 0)
    )
    try:
        sock.sendall(request)
        data = b""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                if want in data[head_end:]:
                    break
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", data[:head_end])
                if length and len(data) - head_end - 4 >= int(length.group(1)):
                    break  # a complete answer with a body of known length
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        sock.close()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


@pytest.fixture
def fuzz_gateway(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> tuple[GatewayProc, list[str], str]:
    """A gateway whose stream holds 30 events, their ids, and a bearer token."""
    produced = []
    for i in range(30):
        produced.append(str(rclient.xadd(keys.events, encode_event(Notification(count=i)))))  # type: ignore[arg-type]
    gw = gateway_factory()
    wait_for(lambda: gw.metric("wxstream_gateway_tail_events") == 30)
    return gw, produced, gw.token()


ID_PART = st.integers(min_value=0, max_value=2**64 + 10)
GARBAGE = st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=200)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_last_event_id_is_400_json_or_a_correct_stream(
    fuzz_gateway: tuple[GatewayProc, list[str], str], data: st.DataObject
) -> None:
    """Garbage, huge values, ids from the future, made-up ids and ids of an older epoch,
    in the header or the query: a 400 with a JSON error, or a stream that starts right
    after the id (it exists) or with ``reset`` (it does not). Never anything else."""
    gw, produced, token = fuzz_gateway
    real = produced[:-1]  # the newest one would only wait for the next event
    value = data.draw(
        st.one_of(
            GARBAGE,
            st.text(min_size=2000, max_size=8000, alphabet="0123456789-"),
            st.builds(lambda a, b: f"{a}-{b}", ID_PART, ID_PART),  # future, made up, huge
            st.builds(lambda a: f"{a}", ID_PART),
            st.sampled_from(real),  # real ones
            # Near misses ("5-7" -> "5-17"), which may be real ids too, but never the
            # newest: a resume from it only waits for the next event (no frame to check).
            st.sampled_from(real)
            .map(lambda i: i.replace("-", "-1"))
            .filter(lambda i: i != produced[-1]),
            st.sampled_from(["0-0", "0-1", "1-0", "1700000000000-0"]),  # an older epoch
        ),
        label="last_event_id",
    )
    in_query = data.draw(st.booleans(), label="in_query")
    auth = f"Authorization: Bearer {token}\r\n"
    if in_query:
        target = "/stream?" + httpx.QueryParams({"lastEventId": value, "x": value[:50]}).__str__()
        request = f"GET {target} HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
    else:
        request = f"GET /stream HTTP/1.1\r\nHost: x\r\n{auth}Last-Event-ID: {value}\r\n\r\n"
    response = raw_request(gw.port, request.encode("latin-1"), want=b"data:", seconds=5)
    status = status_of(response)
    body = response.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in response else b""
    stripped = value.strip()
    if stripped == "" or stripped in real:
        assert status == 200, response[:300]
    if status == 400:
        # Ours is JSON; bytes HTTP forbids in a header (controls) are refused by uvicorn's
        # parser before the app sees them, in plain text.
        assert b'"error"' in body or body == b"Invalid HTTP request received.", response[:300]
        return
    assert status == 200, response[:300]
    # The first frame after `retry:` is a reset, or the event right after a real id.
    fields: list[tuple[bytes, bytes]] = FRAME.findall(body) or wait_for(  # type: ignore[assignment]
        lambda: FRAME.findall(
            raw_request(gw.port, request.encode("latin-1"), want=b"data:", seconds=3).partition(
                b"\r\n\r\n"
            )[2]
        ),
        timeout=3,
        what="a frame",
    )
    event_id, event = fields[0]
    if stripped == "":
        # No id at all: a new client, which gets the state first.
        assert event_id.decode() == produced[-1]
    elif stripped in real:
        assert event_id.decode() == produced[produced.index(stripped) + 1]
    else:
        assert event == b"reset", (value[:80], fields[:2])


def test_gateway_survives_the_fuzzing_with_flat_memory(
    fuzz_gateway: tuple[GatewayProc, list[str], str],
) -> None:
    gw, _, token = fuzz_gateway
    before = rss_mib(gw)
    for i in range(300):
        raw_request(
            gw.port,
            f"GET /stream?lastEventId=garbage{i} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode(),
        )
    assert httpx.get(f"{gw.ops_url}/readyz").status_code == 200
    assert rss_mib(gw) - before < 10


# --- oversized requests -------------------------------------------------------------------


@pytest.mark.parametrize("size", [MAX_HEADER_BYTES + 1, 1_000_000, 10_000_000])
def test_oversized_headers_are_431_json(gateway: GatewayProc, size: int) -> None:
    token = gateway.token()
    for path in ("/api/state", "/stream", "/api/session"):
        response = raw_request(
            gateway.port,
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n".encode()
            + b"X-Pad: "
            + b"a" * size
            + b"\r\n\r\n",
            want=b"}",
        )
        assert status_of(response) == 431, response[:200]
        assert b'"error"' in response
    assert httpx.get(f"{gateway.url}/api/state", headers=gateway.auth()).status_code == 200


def test_oversized_bodies_are_413_json_before_they_are_read(gateway: GatewayProc) -> None:
    before = rss_mib(gateway)
    # Declared: refused at once, nothing read. 200 MB would otherwise sit in memory.
    big = 200 * 1024 * 1024
    response = raw_request(
        gateway.port,
        b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {big}\r\n\r\n".encode()
        + b'{"secret": "',
        want=b"}",
    )
    assert status_of(response) == 413, response[:200]
    assert b"too large" in response

    # Undeclared (chunked): counted as it arrives, refused past the cap.
    def chunks() -> Iterator[bytes]:
        yield b'{"secret": "'
        for _ in range(64):
            yield b"a" * 16384

    resp = httpx.post(
        f"{gateway.url}/api/token", content=chunks(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413
    assert resp.json()["error"].startswith("request body too large")
    # A body within the cap still gets its ordinary answer.
    resp = httpx.post(f"{gateway.url}/api/session", content=b"x" * (MAX_BODY_BYTES - 10))
    assert resp.status_code == 422
    assert rss_mib(gateway) - before < 20


# --- slow loris ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_slow_loris_connections_do_not_starve_other_clients(
    gateway_factory: GatewayFactory,
) -> None:
    """800 connections that send their headers one byte at a time and never finish (and 200
    that declare a body they never send), all within their read deadline (set long here;
    the next test shows it end them): a normal client is still served, and quickly."""
    raise_fd_limit(8192)
    gw = gateway_factory(request_read_timeout_seconds="120")
    auth = gw.auth()
    baseline = []
    for _ in range(20):
        began = time.monotonic()
        assert httpx.get(f"{gw.url}/api/state", headers=auth).status_code == 200
        baseline.append(time.monotonic() - began)
    before = rss_mib(gw)

    async def loris() -> tuple[list[float], int]:
        writers: list[asyncio.StreamWriter] = []
        readers: list[asyncio.StreamReader] = []
        for i in range(1000):
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            readers.append(reader)
            if i < 800:
                writer.write(b"GET /api/state HTTP/1.1\r\nHo")
            else:
                writer.write(
                    b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
                )
            writers.append(writer)
        timings: list[float] = []
        async with httpx.AsyncClient() as http:
            for round_ in range(5):
                for writer in writers[:800]:
                    writer.write(b"s"[:1] if round_ % 2 else b"t")
                for _ in range(10):
                    began = time.monotonic()
                    resp = await http.get(f"{gw.url}/api/state", headers=auth)
                    assert resp.status_code == 200
                    timings.append(time.monotonic() - began)
                await asyncio.sleep(0.2)  # the lorises' pace: a byte now and then
        # Held = nothing came back on them: no answer, no close (read(1) would return).
        reads = [asyncio.create_task(r.read(1)) for r in readers]
        answered, pending = await asyncio.wait(reads, timeout=0.5)
        for task in pending:
            task.cancel()
        alive = len(readers) - len(answered)
        for writer in writers:
            writer.close()
        return timings, alive

    timings, alive = asyncio.run(loris())
    timings.sort()
    p95 = timings[int(len(timings) * 0.95)]
    print(
        f"\nslow loris: 1000 held connections, normal client p95 {p95 * 1000:.1f} ms "
        f"(baseline max {max(baseline) * 1000:.1f} ms), gateway RSS +{rss_mib(gw) - before:.1f} MiB"
    )
    assert alive == 1000  # held: their deadline is longer than this test
    assert p95 < 0.5, timings
    assert rss_mib(gw) - before < 50
    assert httpx.get(f"{gw.ops_url}/readyz").status_code == 200


def test_requests_not_read_in_time_get_408_and_open_streams_are_untouched(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    """A connection that sends nothing, one that dribbles its headers, and one that never
    sends the body it declared are answered 408 and closed once the request deadline
    passes; a stream opened before them is still delivering after it."""
    gw = gateway_factory(request_read_timeout_seconds="1")
    token = gw.token()
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(socket.create_connection(("127.0.0.1", gw.port)))
        stream.sendall(
            f"GET /stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        stream.settimeout(10)
        assert stream.recv(4096).startswith(b"HTTP/1.1 200")
        began = time.monotonic()
        silent, dribble, bodiless = (
            stack.enter_context(socket.create_connection(("127.0.0.1", gw.port))) for _ in range(3)
        )
        dribble.sendall(b"GET /api/state HTTP/1.1\r\nHo")
        bodiless.sendall(b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        for _ in range(3):  # a byte now and then, within the deadline
            time.sleep(0.2)
            dribble.sendall(b"s")
        answers = [_read_to_close(sock) for sock in (silent, dribble, bodiless)]
        assert time.monotonic() - began >= 0.9  # not before the deadline
        for got in answers:
            assert got.startswith(b"HTTP/1.1 408"), got[:80]
            assert b'"error"' in got
        event_id = str(rclient.xadd(keys.events, encode_event(Notification(count=1))))  # type: ignore[arg-type]
        seen = b""
        while f"id: {event_id}".encode() not in seen:
            data = stream.recv(4096)
            assert data, "the open stream was closed"
            seen += data
    assert gw.metric("wxstream_gateway_rejected_total", 'reason="request_read_timeout"') == 3


def _read_to_close(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    out = b""
    while data := sock.recv(4096):
        out += data
    return out


# --- thousands of streams from one address ---------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_thousands_of_streams_from_one_address_get_429_and_others_are_unaffected(
    gateway_factory: GatewayFactory, rclient: redis.Redis, keys: Keys
) -> None:
    raise_fd_limit(8192)
    gw = gateway_factory(max_streams_per_client="64", max_streams="1000")
    token = gw.token()
    before = rss_mib(gw)
    request = f"GET /stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()

    async def flood() -> tuple[Counter[int], list[asyncio.StreamWriter], str]:
        statuses: Counter[int] = Counter()
        held: list[asyncio.StreamWriter] = []
        retry_after = ""

        async def one() -> None:
            nonlocal retry_after
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            statuses[status] += 1
            if status == 200:
                held.append(writer)
            else:
                match = re.search(rb"retry-after: (\d+)", head)
                retry_after = match.group(1).decode() if match else ""
                writer.close()

        await asyncio.gather(*(one() for _ in range(3000)))
        return statuses, held, retry_after

    async def scenario() -> tuple[Counter[int], str, list[str]]:
        statuses, held, retry_after = await flood()
        # Another address (127.0.0.2, still loopback) streams as if nothing happened.
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        seen: list[str] = []
        async with httpx.AsyncClient(transport=transport, timeout=10) as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.stream("GET", f"{gw.url}/stream", headers=headers) as resp:
                assert resp.status_code == 200
                rclient.xadd(keys.events, encode_event(Notification(count=7)))  # type: ignore[arg-type]
                async for line in resp.aiter_lines():
                    if line.startswith("data:"):
                        seen.append(line)
                        break
        for writer in held:
            writer.close()
        return statuses, retry_after, seen

    statuses, retry_after, seen = asyncio.run(scenario())
    growth = rss_mib(gw) - before
    print(f"\n3000 streams from one address: {dict(statuses)}; RSS +{growth:.1f} MiB")
    assert statuses == Counter({200: 64, 429: 3000 - 64})
    assert int(retry_after) > 0
    assert seen == ['data: {"count":7}']
    assert growth < 50
    wait_for(lambda: gw.metric("wxstream_gateway_connections") == 0)
