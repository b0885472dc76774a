"""The ASGI app uvicorn serves: ``/stream`` straight to the stream endpoint, the rest to
FastAPI.

An open stream stays suspended inside every layer it passed through; FastAPI's middleware
and routing layers cost ~6 KB per stream and a few percent of every write (measured in
bench/ANALYSIS.md). The stream has no body and answers in JSON by itself, so it skips them
and does here the two things those layers did for it: the header-size cap and, when
``WX_CORS_ORIGINS`` is set, the CORS headers.
"""

from __future__ import annotations

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

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/stream":
            await self.app(scope, receive, send)
            return
        if header_bytes(scope) > MAX_HEADER_BYTES:
            await refuse_large_headers(send)
            return
        origin = self._allowed_origin(scope)
        if origin is None:
            await self.stream(scope, receive, send)
            return
        cors = [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-credentials", b"true"),
            (b"vary", b"origin"),
        ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.stream(scope, receive, send_with_cors)

    def _allowed_origin(self, scope: Scope) -> bytes | None:
        if not self.cors_origins:
            return None
        for name, value in scope["headers"]:
            if name == b"origin":
                return value if value.decode("latin-1") in self.cors_origins else None
        return None
