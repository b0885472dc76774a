"""One SSE client of the load generator: HTTP/1.1 over a raw asyncio transport.

Cheap per event on purpose (the swarm shares two cores with the server it measures): the
response is de-chunked per chunk, complete frames are cut at the last blank line, and the
ids are pulled out of them by one compiled regex. Every event id is ``<producer ms>-<seq>``
(the producer chooses it), so one id gives both the delivery lag and the order check.

``strict`` mode parses every frame as a browser would (event, data, id) and checks that the
data is the producer's (``{"count": seq}``); the smoke test uses it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Final, cast

ID_LINE: Final = re.compile(rb"^id: ?(\d+)-(\d+)\r?$", re.MULTILINE)
RESET: Final = b"event: reset"
_FIRST: Final = itemgetter(0)
_SECOND: Final = itemgetter(1)
LAG_CAP_MS: Final = 300_000


def frames_end(buf: bytes | bytearray) -> int:
    """Where the last complete SSE frame ends (0 if none): after a blank line."""
    a = buf.rfind(b"\n\n")
    b = buf.rfind(b"\n\r\n")
    return max(a + 2 if a >= 0 else 0, b + 3 if b >= 0 else 0)


@dataclass
class Tally:
    """What a group of clients saw during one window of the run."""

    received: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    state: int = 0  # events older than the window (a new stream's initial state)
    resets: int = 0
    bad_data: int = 0  # strict mode: an event whose data is not the producer's
    first_recv: float = 0.0
    last_recv: float = 0.0
    lag: array[int] = field(default_factory=lambda: array("q", bytes(8 * (LAG_CAP_MS + 1))))

    def to_json(self) -> dict[str, object]:
        hist = {str(i): n for i, n in enumerate(self.lag) if n}
        return {
            "received": self.received,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "state": self.state,
            "resets": self.resets,
            "bad_data": self.bad_data,
            "first_recv": self.first_recv,
            "last_recv": self.last_recv,
            "lag_hist": hist,
        }


class Order:
    """The order check of one client: lost, duplicated and reordered ids, in O(1) per event.

    ``expected`` is the next seq in order. A jump forward records the skipped range as
    missing; an older seq is a late arrival (reordered) if it was missing, else a duplicate.
    """

    __slots__ = ("expected", "missing", "top")

    def __init__(self, first: int) -> None:
        self.expected = first
        self.missing: list[list[int]] = []  # [start, end) ranges, rare
        self.top = first - 1

    def see(self, seq: int, tally: Tally) -> None:
        if seq == self.expected:
            self.expected = seq + 1
        elif seq > self.expected:
            self.missing.append([self.expected, seq])
            self.expected = seq + 1
        else:
            for rng in self.missing:
                if rng[0] <= seq < rng[1]:
                    tally.reordered += 1
                    self._fill(rng, seq)
                    break
            else:
                tally.duplicated += 1
                return
        if seq > self.top:
            self.top = seq

    def _fill(self, rng: list[int], seq: int) -> None:
        start, end = rng
        self.missing.remove(rng)
        if start < seq:
            self.missing.append([start, seq])
        if seq + 1 < end:
            self.missing.append([seq + 1, end])

    def restart(self, first: int) -> None:
        """A new window (or a resume): ids from ``first`` on are expected (again)."""
        self.expected = first
        self.missing = [r for r in self.missing if r[1] <= first]
        self.top = max(self.top, first - 1)

    def close(self, last: int) -> int:
        """Ids up to ``last`` never seen; the window ends."""
        lost = sum(e - s for s, e in self.missing)
        if self.expected <= last:
            lost += last - self.expected + 1
        self.missing = []
        self.expected = max(self.expected, last + 1)
        return lost


class SseClient(asyncio.Protocol):
    """One open stream. Reports into the shared ``Tally`` of its worker."""

    def __init__(
        self,
        request: bytes,
        tally_ref: list[Tally],
        first_seq: int,
        *,
        strict: bool = False,
    ) -> None:
        self.request = request
        self.tally_ref = tally_ref  # [current tally]: the worker swaps windows under us
        self.order = Order(first_seq)
        self.window_start = first_seq
        self.strict = strict
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.headers_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A refusal nobody awaits (--no-wait-headers) must not warn at exit.
        self.headers_done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_id: str | None = None
        self.caught_up_at = 0.0
        self.catch_up_to = 0
        self._head = bytearray()
        self._chunked = False
        self._cbuf = bytearray()
        self._need = 0  # bytes of chunk payload still to read
        self._skip = 0  # CRLF bytes after a chunk still to skip
        self._sse = bytearray()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, yet have its methods.
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.headers_done.done():
            self.headers_done.set_exception(exc or ConnectionError("closed before headers"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self.headers_done.done():
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            self._parse_head(bytes(self._head[:end]))
            rest = bytes(self._head[end + 4 :])
            self._head = bytearray()
            if self.status != 200:
                self.headers_done.set_exception(ConnectionError(f"HTTP {self.status}"))
                if self.transport is not None:
                    self.transport.close()
                return
            self.headers_done.set_result(None)
            if not rest:
                return
            data = rest
        if self._chunked:
            self._dechunk(data)
        else:
            self._feed(data)

    # -- HTTP ----------------------------------------------------------------------------

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                self._chunked = True

    def _dechunk(self, data: bytes) -> None:
        buf = self._cbuf
        buf += data
        pos = 0
        out: list[bytes] = []
        n = len(buf)
        while pos < n:
            if self._skip:
                step = min(self._skip, n - pos)
                self._skip -= step
                pos += step
                continue
            if self._need:
                step = min(self._need, n - pos)
                out.append(bytes(buf[pos : pos + step]))
                self._need -= step
                pos += step
                if not self._need:
                    self._skip = 2
                continue
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                break
            size = int(bytes(buf[pos:nl]).split(b";", 1)[0], 16)
            pos = nl + 2
            if size == 0:  # the server ended the response
                pos = n
                break
            self._need = size
        del buf[:pos]
        if out:
            self._feed(b"".join(out))

    # -- SSE -----------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        sse = self._sse
        if sse:
            sse += data
            block: bytes | bytearray = sse
        else:
            block = data
        end = frames_end(block)
        if end == 0:
            if not sse:
                self._sse += data
            return
        now = time.time()
        if self.strict:
            self._strict(bytes(block[:end]), now)
        else:
            self._fast(block, end, now)
        rest = block[end:]
        self._sse = bytearray(rest)

    def _fast(self, block: bytes | bytearray, end: int, now: float) -> None:
        tally = self.tally_ref[0]
        found = ID_LINE.findall(block, 0, end)
        if RESET in block:
            tally.resets += block.count(RESET, 0, end)
        if not found:
            return
        self._record(found, now, tally)

    def _record(self, found: list[tuple[bytes, bytes]], now: float, tally: Tally) -> None:
        now_ms = now * 1000.0
        order = self.order
        seqs = list(map(int, map(_SECOND, found)))
        first, last, k = seqs[0], seqs[-1], len(seqs)
        if (
            first == order.expected
            and first >= self.window_start
            and last == first + k - 1
            and (k < 3 or seqs == list(range(first, last + 1)))
        ):
            # The usual case, checked in C: exactly the next ids, in order.
            order.expected = last + 1
            if last > order.top:
                order.top = last
            got = k
            stamps = Counter(map(_FIRST, found))
        else:
            got = 0
            stamps = Counter()
            window = self.window_start
            for (ms_b, _), seq in zip(found, seqs, strict=True):
                if seq < window:
                    tally.state += 1
                    continue
                got += 1
                order.see(seq, tally)
                stamps[ms_b] += 1
        lag = tally.lag
        for ms_b, n in stamps.items():
            ms = now_ms - int(ms_b)
            lag[min(int(ms), LAG_CAP_MS) if ms > 0 else 0] += n
        ms_b, seq_b = found[-1]
        self.last_id = f"{ms_b.decode()}-{seq_b.decode()}"
        if got:
            tally.received += got
            if not tally.first_recv:
                tally.first_recv = now
            tally.last_recv = now
        if self.catch_up_to and not self.caught_up_at and order.top >= self.catch_up_to:
            self.caught_up_at = now

    def _strict(self, block: bytes, now: float) -> None:
        """Parse like EventSource: fields per line, an event per blank line."""
        tally = self.tally_ref[0]
        found: list[tuple[bytes, bytes]] = []
        text = block.decode("utf-8").replace("\r\n", "\n")
        for raw in text.split("\n\n"):
            if not raw:
                continue
            event, data, ident = "message", [], None
            for line in raw.split("\n"):
                if not line or line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    ident = value
            if event == "reset":
                tally.resets += 1
                continue
            if ident is None or not data:
                continue
            ms, _, seq = ident.partition("-")
            try:
                count = json.loads("\n".join(data)).get("count")
            except ValueError:
                count = None
            if event != "notification" or count != int(seq):
                tally.bad_data += 1
            found.append((ms.encode(), seq.encode()))
        if found:
            self._record(found, now, tally)

    # -- control -------------------------------------------------------------------------

    def close(self, *, abort: bool = True) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if abort:
                self.transport.abort()
            else:
                self.transport.close()
