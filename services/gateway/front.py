"""The ASGI app uvicorn serves: ``/stream`` straight to the stream endpoint, the rest to
FastAPI.

An open stream stays suspended inside every layer it passed through; FastAPI's middleware
and routing layers cost ~6 KB per stream and a few percent of every write (measured in
bench/ANALYSIS.md). The stream has no body and answers in JSON by itself, so it skips them
and does here the two things those layers did for it: the header-size cap and, when
``WX_CORS_ORIGINS`` is set, the CORS headers.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from fastapi import FastAPI

from .limits import MAX_HEADER_BYTES, header_bytes, refuse_large_headers
from .stream import StreamEndpoint

Scope = dict[str, Any]
Message = dict[str, Any]


class Front:
    def __init__(self, app: FastAPI, stream: StreamEndpoint, cors_origins: list[str]) -> None:
        self.app = app
        self.stream = stream
        self.cors_origins = frozenset(cors_origins)

    def __call__(self, scope: Scope, receive: Any, send: Any) -> Awaitable[None]:
        # Not a coroutine itself: it hands back the endpoint's, so an open stream is not
        # suspended in one more frame (~330 bytes each). uvicorn is told ``asgi3``.
        if scope["type"] != "http" or scope["path"] != "/stream":
            return self.app(scope, receive, send)
        if header_bytes(scope) > MAX_HEADER_BYTES:
            return refuse_large_headers(send)
        origin = self._allowed_origin(scope)
        if origin is None:
            return self.stream(scope, receive, send)
        cors = [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-credentials", b"true"),
            (b"vary", b"origin"),
        ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        return self.stream(scope, receive, send_with_cors)

    def _allowed_origin(self, scope: Scope) -> bytes | None:
        if not self.cors_origins:
            return None
        for name, value in scope["headers"]:
            if name == b"origin":
                return value if value.decode("latin-1") in self.cors_origins else None
        return None
