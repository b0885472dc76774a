"""History frames straight from Redis's bytes say exactly what the general path says."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from services.gateway.sse import frame, frame_fields, relayable
from shared.streams import MalformedEntry, decode


def general(entry_id: bytes, fields: list[bytes]) -> bytes | None:
    try:
        entry = decode(entry_id, dict(zip(fields[::2], fields[1::2], strict=False)))
    except MalformedEntry:
        return None
    return frame(entry) if relayable(entry) else None


NAMES = st.sampled_from([b"event", b"data", b"ts", b"other", b"Event"])
EVENTS = st.sampled_from([b"login", b"notification", b"message", b"reset", b"", b"lo\ngin"])
JSONISH = st.one_of(
    st.builds(
        lambda v: json.dumps(v, ensure_ascii=False).encode(), st.dictionaries(st.text(), st.text())
    ),
    st.builds(lambda v: json.dumps(v).encode(), st.lists(st.integers())),
    st.binary(max_size=40),
    st.sampled_from(
        [b"{", b"{}\n", b"[1]\r", b'{"a":"\xff"}', b'{"a":"\xe5\xbe\xae"}', b"{not json"]
    ),
)
TS = st.one_of(
    st.integers(0, 2**63).map(lambda i: str(i).encode()), st.sampled_from([b"", b"-1", b" 5", b"x"])
)


@settings(max_examples=500, deadline=None)
@given(event=EVENTS, data=JSONISH, ts=TS)
def test_usual_shape(event: bytes, data: bytes, ts: bytes) -> None:
    fields = [b"event", event, b"data", data, b"ts", ts]
    assert frame_fields(b"1700000000000-1", fields) == general(b"1700000000000-1", fields)


@settings(max_examples=500, deadline=None)
@given(fields=st.lists(st.one_of(NAMES, EVENTS, JSONISH, TS), max_size=9))
def test_any_field_list(fields: list[bytes]) -> None:
    assert frame_fields(b"5-0", fields) == general(b"5-0", fields)


def test_a_valid_entry_frames_to_the_same_bytes_as_the_tail() -> None:
    data = json.dumps({"count": 3, "name": "微信 🌱"}, ensure_ascii=False).encode()
    fields = [b"event", b"notification", b"data", data, b"ts", b"1700000000000"]
    framed = frame_fields(b"1700000000000-0", fields)
    assert framed is not None
    assert framed == general(b"1700000000000-0", fields)
    assert framed.startswith(b"id: 1700000000000-0\nevent: notification\ndata: {")
