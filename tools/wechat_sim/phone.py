"""``GET /_sim/phone``: the demo phone, a small page that drives the control API by hand.

Served by the simulator itself, so the page and the control API share an origin (no CORS).
The dashboard links to it in demo mode (the gateway's ``WX_SIM_CONTROL_URL`` + ``/phone``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

PAGE = Path(__file__).with_name("phone.html")


@cache
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


async def phone(request: Request) -> Response:
    return HTMLResponse(
        _page(),
        headers={
            "Cache-Control": "no-store",
            # The page needs nothing from elsewhere; the dashboard may frame it.
            "Content-Security-Policy": (
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'"
            ),
            "Referrer-Policy": "no-referrer",
        },
    )


def routes() -> list[BaseRoute]:
    return [Route("/_sim/phone", phone, methods=["GET"])]
