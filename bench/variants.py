"""Gateway variants for experiments, built from the unchanged gateway code.

    python -m bench.variants stream-first

``stream-first``: the same app, with ``/stream`` dispatched *before* FastAPI's middleware
stack (ServerErrorMiddleware, ExceptionMiddleware, the exit stack, the body limit, the
telemetry and size-limit layers). Every open stream otherwise keeps one suspended frame
per layer alive, and every write passes through their ``send`` wrappers. It serves the
stream exactly as the gateway does (same endpoint object, same hub); it only skips the
layers in between. Run with ``python -m bench.run --gateway-module bench.variants`` (the
variant name comes from ``WX_BENCH_VARIANT``, default ``stream-first``).

Not a product: shutdown is plain uvicorn (no drain), which the benchmark does not need.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import uvicorn
from starlette.routing import Route

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from shared import log as wxlog
from shared.ops_server import ops_server


def stream_first(settings: GatewaySettings) -> tuple[Any, Any]:
    app = create_app(settings)
    stream = next(r.app for r in app.router.routes if isinstance(r, Route) and r.name == "stream")

    async def front(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/stream":
            await stream(scope, receive, send)
            return
        await app(scope, receive, send)

    return front, app.state.gateway


async def serve(variant: str) -> None:
    settings = GatewaySettings()
    if variant != "stream-first":
        raise SystemExit(f"unknown variant {variant!r}")
    front, gateway = stream_first(settings)
    http = uvicorn.Server(
        uvicorn.Config(
            front,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            proxy_headers=True,
            server_header=False,
            timeout_graceful_shutdown=1,
            backlog=4096,
        )
    )
    ops = ops_server(settings.ops_host, settings.ops_port, gateway.readiness)

    async def run_http() -> None:
        await http.serve()  # returns on SIGTERM (uvicorn's own handler)
        ops.should_exit = True

    await asyncio.gather(run_http(), ops.serve())


def main() -> None:
    settings = GatewaySettings()
    wxlog.setup(settings.log_level, settings.log_format)
    import uvloop

    variant = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("WX_BENCH_VARIANT", "")
    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    with runner:
        runner.run(serve(variant or "stream-first"))


if __name__ == "__main__":
    main()
