"""Request size limits: oversized headers or bodies get a JSON 431 or 413 before any route
reads them.

uvicorn (httptools) sets no limit of its own: a 10 MB header block or a 1 GB body to the
sign-in endpoint would be read whole into memory, before any authentication. The API's
bodies are a few hundred bytes; the stream has none.
"""

from __future__ import annotations

import json
from typing import Any, Final

from starlette.exceptions import HTTPException

MAX_HEADER_BYTES: Final = 32 * 1024
MAX_BODY_BYTES: Final = 64 * 1024

Scope = dict[str, Any]


async def _refuse(send: Any, status: int, error: str) -> None:
    payload = json.dumps({"error": error, "status": status}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def header_bytes(scope: Scope) -> int:
    return sum(len(name) + len(value) + 4 for name, value in scope["headers"])


async def refuse_large_headers(send: Any, limit: int = MAX_HEADER_BYTES) -> None:
    await _refuse(send, 431, f"request headers too large (max {limit} bytes)")


class SizeLimits:
    """ASGI middleware: header block and body size caps."""

    def __init__(
        self,
        app: Any,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = 0
        declared: bytes | None = None
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value) + 4
            if name == b"content-length":
                declared = value
        if header_bytes > self.max_header_bytes:
            await _refuse(
                send, 431, f"request headers too large (max {self.max_header_bytes} bytes)"
            )
            return
        if declared is not None and (
            not declared.strip().isdigit() or int(declared) > self.max_body_bytes
        ):
            await _refuse(send, 413, f"request body too large (max {self.max_body_bytes} bytes)")
            return
        received = 0

        async def limited() -> Any:
            # A body sent without a length (chunked) is counted as it arrives.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(
                        413, f"request body too large (max {self.max_body_bytes} bytes)"
                    )
            return message

        await self.app(scope, limited, send)
