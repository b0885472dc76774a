"""The benchmark harness, small: it must keep working, and its id checks must be right.

No timing is asserted here (this machine is shared); what is asserted is exact: every
client gets every event once, in order, with the producer's data, live and after a resume.
The peers run here too (their virtualenv is built on first use, ~30 s, then reused).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# bench/ is a tool beside the packages, not one of them (pyproject installs shared, services
# and tools only): import it from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import peers_env
from bench.scenarios import Bench, smoke
from bench.servers import Kind
from bench.sse_client import Order, SseClient, Tally
from shared.local_redis import LocalRedis

CLIENTS = 20
EVENTS = 25


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    # Its own Redis: the harness flushes it between runs.
    server = LocalRedis(tmp_path / "redis")
    server.start()
    b = Bench(server.url, tmp_path / "logs", workers=1)
    try:
        yield b
    finally:
        await b.aclose()
        server.stop()


def assert_exact(res: dict[str, object], expected: int) -> None:
    assert res["errors"] == {}
    assert res["lost"] == 0
    assert res["duplicated"] == 0
    assert res["reordered"] == 0
    assert res["resets"] == 0
    assert res["bad_data"] == 0
    assert res["incomplete_clients"] == 0
    assert res["received"] == expected


def test_order_counts_lost_duplicated_and_reordered() -> None:
    tally = Tally()
    order = Order(first=1)
    for seq in (1, 2, 4, 5, 3, 5, 8):
        order.see(seq, tally)
    assert (tally.reordered, tally.duplicated) == (1, 1)
    assert order.close(last=9) == 3  # 6 and 7 never came, nor 9


async def test_client_parses_chunked_sse_split_anywhere() -> None:
    tally = Tally()
    client = SseClient(b"", [tally], first_seq=1, strict=True)
    events = b"".join(
        f'id: 1700000000000-{i}\nevent: notification\ndata: {{"count":{i}}}\n\n'.encode()
        for i in range(1, 4)
    )
    body = b"%x\r\n%s\r\n" % (len(events), events)
    wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body
    for i in range(0, len(wire), 7):  # TCP may cut anywhere: inside sizes, CRLFs, lines
        client.data_received(wire[i : i + 7])
    assert client.headers_done.done()
    assert (tally.received, tally.bad_data, client.last_id) == (3, 0, "1700000000000-3")
    # Out of order (the slow path): 6, then 5 late, then 5 again; 4 never comes.
    for i in (6, 5, 5):
        frame = f'id: 1700000000001-{i}\nevent: notification\ndata: {{"count":{i}}}\n\n'
        client.data_received(b"%x\r\n%s\r\n" % (len(frame), frame.encode()))
    assert (tally.received, tally.reordered, tally.duplicated) == (6, 1, 1)
    assert client.order.close(last=6) == 1


async def test_smoke_wxstream(bench: Bench) -> None:
    res = await smoke(bench, "wxstream", CLIENTS, EVENTS)
    assert res["connected"] == CLIENTS
    assert_exact(res["live"], CLIENTS * EVENTS)
    assert_exact(res["resume"], CLIENTS * EVENTS)
    assert res["resume"]["caught_up"] == CLIENTS


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["xread", "flask-sse"])
async def test_smoke_peer(bench: Bench, kind: Kind) -> None:
    await asyncio.to_thread(peers_env.ensure)
    res = await smoke(bench, kind, CLIENTS, EVENTS)
    assert res["connected"] == CLIENTS
    assert_exact(res["live"], CLIENTS * EVENTS)
    if kind == "xread":  # Flask-SSE keeps no history: no resume to check
        assert_exact(res["resume"], CLIENTS * EVENTS)
