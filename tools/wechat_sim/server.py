"""Run the simulator in a background thread for tests: ``with SimServer() as sim: ...``.

The server binds an ephemeral port on 127.0.0.1, is ready when ``start()`` returns, and on
``stop()`` first releases every held long poll so that shutdown takes milliseconds rather than
a poll period.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import FrameType, TracebackType

import uvicorn

from .app import create_app
from .client import SimClient
from .state import SimConfig, SimState

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class SimUvicorn(uvicorn.Server):
    """uvicorn that reports when (and on which port) it listens, and ends long polls on exit.

    Without the release, a shutdown waits for every held login poll and synccheck, then
    cancels them into 500s once the graceful-shutdown timeout runs out.
    """

    def __init__(self, config: uvicorn.Config, state: SimState) -> None:
        super().__init__(config)
        self.state = state
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.state.closing = False  # a restarted SimServer holds long polls again
        await super().startup(sockets)
        self.loop = asyncio.get_running_loop()
        for server in self.servers:
            for sock in server.sockets:
                self.port = int(sock.getsockname()[1])
        self.ready.set()

    def release(self) -> None:
        """Answer every held request now; safe to call from any thread."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.state.close)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.release()
        super().handle_exit(sig, frame)

    def run_in_thread(self) -> None:
        try:
            self.run()
        finally:
            # Also on a failed start-up (uvicorn exits the thread), so start() never hangs.
            self.ready.set()


class SimServer:
    """A WeChat web-protocol simulator on ``base_url``; control API on ``control_url``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        poll_seconds: float = 1.0,
        contact_page_size: int = 4,
    ) -> None:
        self.host = host
        self.state = SimState(
            SimConfig(poll_seconds=poll_seconds, contact_page_size=contact_page_size)
        )
        self._requested_port = port
        self._server: SimUvicorn | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        """What ``itchat.config.BASE_URL`` must be set to."""
        if not self.port:
            raise RuntimeError("the simulator is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        return f"{self.base_url}/_sim"

    def client(self) -> SimClient:
        return SimClient(self.control_url)

    def start(self) -> SimServer:
        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        config = uvicorn.Config(
            create_app(self.state),
            host=self.host,
            port=self._requested_port,
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = SimUvicorn(config, self.state)
        thread = threading.Thread(target=server.run_in_thread, name="wechat-sim", daemon=True)
        thread.start()
        if not server.ready.wait(START_TIMEOUT) or not server.port:
            server.should_exit = True
            thread.join(STOP_TIMEOUT)
            raise RuntimeError("the simulator did not start (port in use?)")
        self._server, self._thread, self.port = server, thread, server.port
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.release()
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        self._server = self._thread = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
