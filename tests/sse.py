"""A small SSE client for tests: parses frames exactly as a browser's EventSource would."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Parser:
    """Incremental SSE parser (the WHATWG rules our server relies on)."""

    buffer: str = ""
    retry: int | None = None
    comments: int = 0
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, text: str) -> list[Event]:
        self.buffer += text
        out: list[Event] = []
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            line = line.rstrip("\r")
            if line == "":
                if self._data:
                    out.append(Event(self._event or "message", "\n".join(self._data), self._id))
                self._event, self._data, self._id = "", [], None
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
            elif name == "id":
                self._id = value
            elif name == "retry" and value.isdigit():
                self.retry = int(value)
        return out


async def events(
    client: httpx.AsyncClient,
    url: str,
    *,
    last_event_id: str | None = None,
    headers: dict[str, str] | None = None,
    parser: Parser | None = None,
) -> AsyncGenerator[Event, None]:
    """Yield events from one SSE connection until the server ends it."""
    hdrs = dict(headers or {})
    if last_event_id is not None:
        hdrs["Last-Event-ID"] = last_event_id
    parser = parser or Parser()
    async with client.stream("GET", url, headers=hdrs, timeout=httpx.Timeout(30.0)) as resp:
        if resp.status_code != 200:
            body = await resp.aread()
            raise httpx.HTTPStatusError(
                f"stream refused: {resp.status_code} {body[:200]!r}",
                request=resp.request,
                response=resp,
            )
        async for text in resp.aiter_text():
            for event in parser.feed(text):
                yield event
