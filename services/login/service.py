"""The login service assembled: lease keeper, command consumer, driver, ops server, signals.

Threads: ``lease`` (acquire/renew), ``commands`` (XREADGROUP), ``driver`` (the state
machine), and per login attempt ``login-N`` (itchat's auto_login), ``pump-N`` (messages)
and itchat's own receive thread. The asyncio loop on the main thread only serves
``/healthz``, ``/readyz`` and ``/metrics`` and waits for SIGTERM/SIGINT.

Shutdown: stop reading commands, let the driver save the session (itchat's
dump_login_status) and publish what is queued, then stop renewing and release the lease so
a standby takes over at once, and exit 0 — all within ``shutdown_grace_seconds``, even
while itchat sits in a long poll (its threads are daemons).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time

from services.login.commands import CommandConsumer
from services.login.driver import Driver, LeaseAcquired, LeaseLost, Shutdown
from services.login.itchat_logging import import_itchat
from services.login.lease import Lease, LeaseKeeper, LeaseState, new_owner_id
from services.login.publisher import Publisher
from services.login.settings import LoginSettings
from shared.ops_server import ops_server
from shared.redis_client import sync_client

log = logging.getLogger(__name__)


class OpsPortUnavailable(Exception):
    pass


def bind_ops_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OpsPortUnavailable(f"{host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


class LoginService:
    def __init__(self, settings: LoginSettings) -> None:
        self.settings = settings
        itchat = import_itchat()
        # Process-global in itchat: one account per process.
        itchat.config.BASE_URL = settings.wechat_base_url.rstrip("/")
        keys = settings.keys
        self.owner = new_owner_id()
        timeout = settings.redis_timeout_seconds
        client = sync_client(settings.redis_url, timeout=timeout, max_connections=16)
        # The lease has its own connections with a timeout well inside the ttl, so a stalled
        # Redis is noticed before the lease could run out unnoticed.
        lease_client = sync_client(
            settings.redis_url, timeout=min(timeout, settings.lease_renew_seconds),
            max_connections=2,
        )  # fmt: skip
        command_client = sync_client(
            settings.redis_url, timeout=timeout, block_seconds=1.0, max_connections=2
        )
        self.lease_state = LeaseState()
        self.publisher = Publisher(
            client,
            keys,
            self.lease_state,
            events_maxlen=settings.events_maxlen,
            messages_maxlen=settings.messages_maxlen,
        )
        self.driver = Driver(settings, itchat, self.lease_state, self.publisher)
        self.keeper = LeaseKeeper(
            Lease(lease_client, keys, self.owner, settings.lease_ttl_seconds),
            self.lease_state,
            ttl_seconds=settings.lease_ttl_seconds,
            renew_seconds=settings.lease_renew_seconds,
            poll_seconds=settings.lease_poll_seconds,
            on_acquired=lambda value: self.driver.submit(LeaseAcquired(value)),
            on_lost=lambda value, why: self.driver.submit(LeaseLost(why)),
        )
        self.commands = CommandConsumer(
            command_client,
            keys,
            self.lease_state,
            self.publisher,
            self.driver.submit,
            consumer=self.owner,
            max_age_seconds=settings.command_max_age_seconds,
            poll_seconds=settings.lease_poll_seconds,
        )

    def readiness(self) -> dict[str, bool]:
        return {
            "redis": self.keeper.redis_ok,
            # Holding the lease or standing by for it: either way the keeper is at work.
            "lease": self.keeper.is_alive(),
            "driver": self.driver.is_alive(),
            "commands": self.commands.is_alive(),
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        server = ops_server(self.settings.ops_host, self.settings.ops_port, self.readiness)
        # Bound here, before anything starts, so a taken port is a clean exit 1 with one log
        # line instead of uvicorn's SystemExit from inside the loop.
        listener = bind_ops_socket(self.settings.ops_host, self.settings.ops_port)
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        self.driver.start()
        self.keeper.start()
        self.commands.start()
        log.info("started", extra={"owner": self.owner, "ops_port": self.settings.ops_port})
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping")
        await loop.run_in_executor(None, self.shutdown)
        server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(serving, timeout=1.0)
        stopping.cancel()
        log.info("stopped")

    def shutdown(self) -> None:
        """Blocking; bounded by ``shutdown_grace_seconds``."""
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds

        def left(share: float = 1.0) -> float:
            return max(0.1, (deadline - time.monotonic()) * share)

        self.commands.stop()
        self.driver.submit(Shutdown())
        self.driver.join(left(0.7))
        if self.driver.is_alive():
            log.warning("driver_stop_timeout")
        self.keeper.stop()
        self.keeper.join(left(0.5))
        self.keeper.release()
        self.commands.join(left())
