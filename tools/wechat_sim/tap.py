"""In front of every route: per-endpoint request counts, injected faults, one log line each.

The log line carries method, path, status and duration only: query strings hold skeys,
tickets and sids, and cookies hold the session, so neither is ever logged.
"""

from __future__ import annotations

import logging
import time

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .state import SimState

logger = logging.getLogger("wechat_sim")

CONTROL_PREFIX = "/_sim/"


def endpoint_name(path: str) -> str:
    """``/cgi-bin/mmwebwx-bin/synccheck`` → ``synccheck``; ``/`` → ``root``."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last or "root"


class RequestTap:
    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        app = self.app
        if not path.startswith(CONTROL_PREFIX):
            endpoint = endpoint_name(path)
            # Counted on arrival, so a test can see a long poll that is still being held.
            self.state.count_request(endpoint)
            fault = self.state.take_fault(endpoint)
            if fault is not None:
                app = Response(fault.body, fault.status, media_type=fault.content_type)
        status = 0

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await app(scope, receive, send_and_note)
        finally:
            logger.info(
                "%s %s %d %.0fms",
                scope["method"],
                path,
                status,
                (time.perf_counter() - started) * 1000,
            )
