"""Server-Sent Events framing: every event is encoded to bytes once, here.

Ids go only on real stream entries: a control frame with an id would move the browser's
``Last-Event-ID`` and make it skip real events on the next reconnect.
"""

from __future__ import annotations

import json
import random
from typing import Final

from shared.streams import Entry, MalformedEntry, decode

KEEPALIVE: Final = b": keepalive\n\n"

HEADERS: Final[list[tuple[bytes, bytes]]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    # nginx and its kin buffer responses unless told not to; never compress the stream.
    (b"x-accel-buffering", b"no"),
    (b"content-encoding", b"identity"),
]


_JSON: Final = json.JSONDecoder()  # json.loads without its per-call argument checks


def relayable(entry: Entry) -> bool:
    """An entry that can be framed safely: a known name and one line of JSON data.

    The JSON is parsed, not just sniffed: ``{not json`` would reach every browser, whose
    ``JSON.parse`` throws in the page's listener. Parsed once per entry, never per client.
    """
    if (
        entry.event not in RELAYED_EVENTS
        or "\n" in entry.data
        or "\r" in entry.data
        or entry.data[:1] not in ("{", "[")
    ):
        return False
    try:
        _JSON.decode(entry.data)
    except ValueError:
        return False
    return True


RELAYED_EVENTS: Final = frozenset({"login", "notification", "message"})
_RELAYED_BYTES: Final = frozenset(name.encode() for name in RELAYED_EVENTS)


def frame(entry: Entry) -> bytes:
    return _frame(entry.id.encode(), entry.event.encode(), entry.data.encode())


def _frame(entry_id: bytes, event: bytes, data: bytes) -> bytes:
    """The one place the frame of a stream entry is spelled out."""
    return b"".join((b"id: ", entry_id, b"\nevent: ", event, b"\ndata: ", data, b"\n\n"))


def control_frame(event: str, data: dict[str, object]) -> bytes:
    """A frame the gateway itself says (``reset``): no id, on purpose."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def retry_frame(base_ms: int, jitter_ms: int) -> bytes:
    """The reconnect delay, jittered so a deploy does not bring every client back at once."""
    return f"retry: {base_ms + random.randint(0, jitter_ms)}\n\n".encode()


def frame_fields(entry_id: bytes, fields: list[bytes]) -> bytes | None:
    """The frame of an entry as Redis sent it (bytes, a flat field list), or ``None`` if it
    is not relayable: the same answer as ``decode`` + ``relayable`` + ``frame``.

    For history replays, where a client may be 100,000 entries behind: the usual shape
    (``event``, ``data``, ``ts`` in the order ``shared.streams.encode`` writes them) is
    framed straight from the bytes; anything else takes the general path.
    """
    if (
        len(fields) == 6
        and fields[0] == b"event"
        and fields[2] == b"data"
        and fields[4] == b"ts"
        and fields[5].isdigit()
    ):
        event, data = fields[1], fields[3]
        if event not in _RELAYED_BYTES or b"\n" in data or b"\r" in data or data[:1] not in b"{[":
            return None
        try:
            _JSON.decode(data.decode())
        except ValueError:  # invalid JSON, or not UTF-8 (which the general path replaces)
            pass
        else:
            return _frame(entry_id, event, data)
    try:
        entry = decode(entry_id, dict(zip(fields[::2], fields[1::2], strict=False)))
    except MalformedEntry:
        return None
    return frame(entry) if relayable(entry) else None
