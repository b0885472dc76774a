"""uvicorn's HTTP protocol with a deadline for reading each request.

uvicorn (0.54, httptools) has no such timeout: a connection that sends nothing, or its
headers a byte at a time, or a body it declared and never sends, is held until the client
gives up or the process runs out of file descriptors (slow loris). This subclass gives every
request ``WX_REQUEST_READ_TIMEOUT_SECONDS`` from its connection (or, on a kept-alive
connection, from its first byte) until it has been read whole; past that it answers
``408 Request Timeout`` and closes the connection. A response already under way, such as an
open SSE stream, is never touched: its request was read long before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import metrics

log = logging.getLogger("wxstream.gateway.read_timeout")

_BODY = b'{"error": "request not received in time"}'
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


def read_timeout_protocol(seconds: float) -> type[HttpToolsProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""

    class ReadTimeoutProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadline is None:  # a kept-alive connection's next request
                self._arm()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(seconds, self._timed_out)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _timed_out(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            metrics.REJECTED.labels("request_read_timeout").inc()
            log.info("request_read_timeout", extra={"seconds": seconds})
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(_REQUEST_TIMEOUT)
            self.transport.close()

    return ReadTimeoutProtocol
