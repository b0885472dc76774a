"""``python -m services.gateway``: serve the gateway and its ops port until SIGTERM, then drain.

On SIGTERM (or SIGINT): readiness goes false and new streams are refused at once; open
streams are ended, spread over ``WX_DRAIN_SECONDS``, so clients reconnect elsewhere and
resume losslessly; then both servers stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import uvicorn

from shared import log as wxlog
from shared.ops_server import EmbeddedServer, ops_server

from .app import create_app, serving_app
from .deps import Gateway
from .read_timeout import read_timeout_protocol
from .settings import GatewaySettings

log = logging.getLogger("wxstream.gateway")


async def _drain(gateway: Gateway, servers: list[EmbeddedServer]) -> None:
    settings = gateway.settings
    log.info(
        "draining", extra={"streams": len(gateway.hub.clients), "seconds": settings.drain_seconds}
    )
    gateway.hub.drain(settings.drain_seconds)
    await gateway.hub.wait_empty(settings.drain_seconds + 1.0)
    log.info("drained", extra={"streams_left": len(gateway.hub.clients)})
    for server in servers:
        server.should_exit = True


async def serve(settings: GatewaySettings) -> None:
    app = create_app(settings)
    gateway: Gateway = app.state.gateway
    http = EmbeddedServer(
        uvicorn.Config(
            serving_app(app),
            interface="asgi3",  # Front.__call__ returns the coroutine, it is not one
            http=read_timeout_protocol(settings.request_read_timeout_seconds),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            proxy_headers=True,
            server_header=False,
            timeout_graceful_shutdown=3,
            backlog=4096,
        )
    )
    ops = ops_server(settings.ops_host, settings.ops_port, gateway.readiness)
    servers = [http, ops]
    loop = asyncio.get_running_loop()
    draining: list[asyncio.Task[None]] = []

    def on_signal(signum: int) -> None:
        if draining:
            log.warning("second_signal_exiting_now")
            for server in servers:
                server.force_exit = True
                server.should_exit = True
            return
        draining.append(asyncio.create_task(_drain(gateway, servers)))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    log.info(
        "gateway_started",
        extra={"http": f"{settings.http_host}:{settings.http_port}", "ops_port": settings.ops_port},
    )
    await asyncio.gather(http.serve(), ops.serve())


def main() -> None:
    settings = GatewaySettings()
    wxlog.setup(settings.log_level, settings.log_format)
    wxlog.bind(service="gateway", account=settings.account)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # uvicorn[standard] brings it; plain asyncio works too
        pass
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
