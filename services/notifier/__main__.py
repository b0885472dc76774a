"""``python -m services.notifier``: the counting loop and the ops server in one asyncio loop.

SIGTERM or SIGINT stops reading, publishes a change still waiting for its window, stops the
ops server and exits 0. An ops server that cannot start (its port is taken) stops the
notifier too, and the process exits 1: a worker nobody can probe is not half-running.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from services.notifier.settings import NotifierSettings
from services.notifier.worker import Notifier
from shared import log as wxlog
from shared.ops_server import EmbeddedServer, ops_server
from shared.redis_client import async_client

log = logging.getLogger("services.notifier")


async def serve_ops(server: EmbeddedServer, notifier: Notifier) -> bool:
    """Run the ops server until told to exit; False if it could not start."""
    try:
        await server.serve()
    except SystemExit:  # uvicorn's answer to a port it cannot bind, already logged
        log.error("ops_server_failed")
        notifier.stop()
        return False
    return True


async def serve(settings: NotifierSettings) -> int:
    # One connection does all the work (the loop is sequential); a spare for reconnects.
    client = async_client(
        settings.redis_url,
        timeout=settings.redis_timeout_seconds,
        block_seconds=settings.read_block_seconds,
        max_connections=2,
    )
    notifier = Notifier(settings, client)
    server = ops_server(settings.ops_host, settings.ops_port, notifier.readiness)

    def on_signal(signum: signal.Signals) -> None:
        log.info("signal_received", extra={"signal": signum.name})
        notifier.stop()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)

    ops = asyncio.create_task(serve_ops(server, notifier), name="ops-server")
    try:
        await notifier.run()
    finally:
        server.should_exit = True
        ops_ok = await ops
        await client.aclose(close_connection_pool=True)
    return 0 if ops_ok else 1


def main() -> None:
    settings = NotifierSettings()
    wxlog.setup(settings.log_level, settings.log_format)
    wxlog.bind(service="notifier", account=settings.account, consumer=settings.consumer)
    sys.exit(asyncio.run(serve(settings)))


if __name__ == "__main__":
    main()
