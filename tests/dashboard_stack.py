"""The dashboard's browser tests' rig: Debian's Chromium, a gateway that can restart on its
port, the login and notifier services as real processes, the simulator, and a page helper.

Nothing here sleeps: every wait is Playwright's (``expect``, ``wait_for_*``) or ``wait_for``
on a condition, each with a timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis
from gateway_fixtures import SECRET, GatewayProc
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    expect,
)
from procs import REPO, ServiceProc, wait_for

from services.gateway.auth import Authenticator
from services.gateway.settings import GatewaySettings
from shared.events import EventPayload
from shared.keys import Keys
from shared.local_redis import free_port
from shared.messages import ChatMessage
from shared.streams import encode, encode_event
from tools.wechat_sim import SimClient, SimServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
WAIT_MS = 15_000
"""Upper bound for one wait in the browser; a healthy step takes well under a second."""


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium: a browser is never downloaded."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


# --- the gateway on a fixed port -----------------------------------------------------------


class PinnedGateway(GatewayProc):
    """A gateway process on a port chosen by the test, so a successor can take the same one
    and the page's EventSource (and cookie) find it again after a restart."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int, ops_port: int) -> None:
        super().__init__(env, log_path)
        self.port = port
        self.ops_port = ops_port
        self.env["WX_HTTP_PORT"] = str(port)
        self.env["WX_OPS_PORT"] = str(ops_port)


@dataclass
class GatewaySlot:
    """One gateway address; ``restart`` stops the process (SIGTERM, drain) and starts anew."""

    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    ops_port: int = field(default_factory=free_port)
    proc: PinnedGateway | None = None
    started: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, **overrides: str) -> PinnedGateway:
        env = {**self.env, **overrides}
        self.proc = PinnedGateway(
            env, self.log_dir / f"gateway-{self.started}.log", self.port, self.ops_port
        )
        self.started += 1
        return self.proc.start_ready()  # type: ignore[return-value]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def restart(self, **overrides: str) -> PinnedGateway:
        self.stop()
        return self.start(**overrides)


# --- the stack ---------------------------------------------------------------------------


@dataclass
class Stack:
    redis_url: str
    keys: Keys
    rclient: redis.Redis
    run_dir: Path
    gateway: GatewaySlot
    sim: SimServer | None = None
    phone: SimClient | None = None
    procs: list[ServiceProc] = field(default_factory=list)

    def start_login(self) -> ServiceProc:
        assert self.sim is not None
        ops_port = free_port()
        proc = ServiceProc(
            "services.login",
            {
                "WX_REDIS_URL": self.redis_url,
                "WX_ACCOUNT": self.keys.account,
                "WX_WECHAT_BASE_URL": self.sim.base_url,
                "WX_SESSION_DIR": str(self.run_dir / "session"),
                "WX_MEDIA_DIR": str(self.run_dir / "media"),
                "WX_OPS_PORT": str(ops_port),
                "WX_LEASE_TTL_SECONDS": "2.5",
                "WX_LEASE_RENEW_SECONDS": "0.5",
                "WX_LEASE_POLL_SECONDS": "0.1",
                "WX_BACKOFF_BASE_SECONDS": "0.5",
                "WX_BACKOFF_MAX_SECONDS": "2",
            },
            self.run_dir / "login.log",
        )
        self.procs.append(proc)
        proc.start()
        proc.wait_http(f"http://127.0.0.1:{ops_port}/readyz")
        return proc

    def start_notifier(self) -> ServiceProc:
        ops_port = free_port()
        proc = ServiceProc(
            "services.notifier",
            {
                "WX_REDIS_URL": self.redis_url,
                "WX_ACCOUNT": self.keys.account,
                "WX_OPS_PORT": str(ops_port),
                "WX_NOTIFIER_COALESCE_SECONDS": "0.05",
            },
            self.run_dir / "notifier.log",
        )
        self.procs.append(proc)
        proc.start()
        proc.wait_http(f"http://127.0.0.1:{ops_port}/readyz")
        return proc

    def logs(self) -> str:
        parts = [f"--- {p.module} ---\n{p.log_text()[-2500:]}" for p in self.procs]
        if self.gateway.proc is not None:
            parts.append(f"--- gateway ---\n{self.gateway.proc.log_text()[-2500:]}")
        return "\n".join(parts)

    def close(self) -> None:
        for proc in self.procs:
            proc.stop(timeout=8)
        self.gateway.stop()

    # --- feeding the events stream directly (unit-level tests) ---------------------------

    def publish(self, payload: EventPayload) -> str:
        return str(self.rclient.xadd(self.keys.events, encode_event(payload)))  # type: ignore[arg-type]

    def deliver(self, message: ChatMessage) -> str:
        """What the login service does with a received message: both streams, one entry each."""
        fields = encode("message", message)
        self.rclient.xadd(self.keys.messages, fields)  # type: ignore[arg-type]
        return str(self.rclient.xadd(self.keys.events, fields))  # type: ignore[arg-type]


def chat_message(n: int, **overrides: Any) -> ChatMessage:
    values: dict[str, Any] = {
        "id": f"70000000000000{n:05d}",
        "chat": "friend",
        "chat_id": "@zhang",
        "chat_name": "张三",
        "type": "text",
        "text": f"第 {n} 条消息 🐱",
        "created_at": int(time.time()),
    }
    values.update(overrides)
    return ChatMessage(**values)


def expired_token() -> str:
    """A session token the test's gateway signed itself, but expired an hour ago."""
    auth = Authenticator(GatewaySettings(admin_secret=SECRET))
    token, _ = auth.issue(now=time.time() - auth.ttl - 3600)
    return token


# --- the page ----------------------------------------------------------------------------


class Dashboard:
    """One browser tab on the dashboard, with the checks every test makes on it."""

    def __init__(self, context: BrowserContext, base_url: str) -> None:
        self.context = context
        self.base_url = base_url
        self.page: Page = context.new_page()
        self.errors: list[str] = []
        self.failures: list[tuple[int, str]] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("console", self._console)
        self.page.on("response", self._response)
        self.page.set_default_timeout(WAIT_MS)

    def open(self) -> Dashboard:
        self.page.goto(self.base_url + "/")
        expect(self.page.locator("#booting")).to_be_hidden()
        return self

    def sign_in(self, secret: str = SECRET) -> None:
        self.page.fill("#secret", secret)
        self.page.click("#signin-submit")

    def view(self, name: str) -> None:
        """Wait until ``name`` (signin, login, main) is the one view shown."""
        expect(self.page.locator(f"#view-{name}")).to_be_visible()
        for other in {"signin", "login", "main"} - {name}:
            expect(self.page.locator(f"#view-{other}")).to_be_hidden()

    def connection(self, state: str) -> None:
        expect(self.page.locator("#conn")).to_have_attribute("data-state", state)

    def login_phase(self, phase: str) -> None:
        expect(self.page.locator("#view-login")).to_have_attribute("data-phase", phase)

    def unread(self, count: int) -> None:
        expect(self.page.locator("#unread-count")).to_have_attribute("data-count", str(count))

    def rows(self) -> list[str]:
        ids: list[str] = self.page.eval_on_selector_all(
            "#messages > li", "rows => rows.map(r => r.dataset.id)"
        )
        return ids

    def row_count(self, count: int) -> None:
        expect(self.page.locator("#messages > li")).to_have_count(count)

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path

    def _console(self, msg: ConsoleMessage) -> None:
        # Failed loads are checked by URL in _response; every other error is a bug.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.errors.append(f"console: {msg.text}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failures.append((response.status, urlsplit(response.url).path))

    def assert_clean(self, *allowed: tuple[int, str]) -> None:
        """No script error, and no failed request but the start-up "am I signed in?" (401
        before signing in) and those the test provoked, given as ``(status, path)``."""
        assert not self.errors, self.errors
        expected = {(401, "/api/session"), *allowed}
        unexpected = [f for f in self.failures if f not in expected]
        assert not unexpected, unexpected


@contextmanager
def dashboard(browser: Browser, base_url: str, **context_args: Any) -> Iterator[Dashboard]:
    context = browser.new_context(**context_args)
    try:
        yield Dashboard(context, base_url)
    finally:
        context.close()


def stream_status(base_url: str, cookie: str | None = None) -> tuple[int, str]:
    headers = {"Cookie": f"wxstream_session={cookie}"} if cookie else {}
    with httpx.stream("GET", f"{base_url}/stream", headers=headers, timeout=5.0) as resp:
        body = resp.read().decode() if resp.status_code != 200 else ""
        return resp.status_code, body


def sim_phase(phone: SimClient, phase: str) -> None:
    wait_for(lambda: phone.state()["phase"] == phase, timeout=15, what=f"sim phase {phase}")
