"""Dashboard sessions: the admin secret signs in, a signed HttpOnly cookie or a bearer
token carries the session after that.

Tokens are stateless (``v1.<expiry>.<nonce>.<hmac>``) so that checking one costs no Redis
round trip: a reconnect storm of ten thousand streams reads nothing from Redis to
authenticate. Signing out clears the cookie; rotating ``WX_SESSION_KEY`` (or the admin
secret it derives from) revokes every session at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from .settings import GatewaySettings

COOKIE: Final = "wxstream_session"
_VERSION: Final = "v1"


@dataclass(frozen=True, slots=True)
class Session:
    expires_at: int
    via: str  # "cookie" or "bearer"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Authenticator:
    def __init__(self, settings: GatewaySettings) -> None:
        secret = settings.admin_secret.get_secret_value().encode()
        self._secret_digest = hashlib.sha256(secret).digest()
        if settings.session_key is not None:
            key = settings.session_key.get_secret_value().encode()
        else:
            key = hmac.new(secret, b"wxstream session key", hashlib.sha256).digest()
        self._key = key
        self.ttl = settings.session_ttl_seconds

    def check_secret(self, given: str) -> bool:
        """Constant time whatever the length of ``given``: both sides are hashed first."""
        digest = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
        return hmac.compare_digest(digest, self._secret_digest)

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def issue(self, now: float | None = None) -> tuple[str, int]:
        expires = int((now if now is not None else time.time()) + self.ttl)
        body = f"{_VERSION}.{expires}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._sign(body)}", expires

    def verify(self, token: str, *, via: str, now: float | None = None) -> Session | None:
        # compare_digest refuses non-ASCII str: such a token is simply not ours.
        if len(token) > 256 or not token.isascii():
            return None
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != _VERSION:
            return None
        body, sig = ".".join(parts[:3]), parts[3]
        if not hmac.compare_digest(sig, self._sign(body)):
            return None
        try:
            expires = int(parts[1])
        except ValueError:
            return None
        if expires <= (now if now is not None else time.time()):
            return None
        return Session(expires, via)

    def from_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Session | None:
        """The session a request carries: a bearer token first, else the cookie."""
        cookie_header = b""
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    return self.verify(token.strip(), via="bearer")
            elif name == b"cookie":
                cookie_header = value
        if cookie_header:
            cookie = cookie_value(cookie_header.decode("latin-1"), COOKIE)
            if cookie is not None:
                return self.verify(cookie, via="cookie")
        return None


def cookie_value(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


class SignInLimiter:
    """At most N failed sign-ins per client address per minute (in this process)."""

    def __init__(self, per_minute: int, max_addresses: int = 10_000) -> None:
        self.per_minute = per_minute
        self.max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, addr: str, now: float | None = None) -> int:
        """Seconds until ``addr`` may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        window = self._failures.get(addr)
        if not window:
            return 0
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) < self.per_minute:
            return 0
        return max(1, int(window[0] + 60 - now) + 1)

    def failed(self, addr: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if addr not in self._failures and len(self._failures) >= self.max_addresses:
            # Forget the oldest address rather than grow without bound under a spray.
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(addr, deque()).append(now)

    def succeeded(self, addr: str) -> None:
        self._failures.pop(addr, None)
