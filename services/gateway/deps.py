"""What a request handler needs: the process's gateway objects and the caller's session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aredis
from fastapi import Depends, HTTPException, Request

from shared.keys import Keys

from . import metrics
from .auth import Authenticator, Session, SignInLimiter
from .hub import Hub
from .settings import GatewaySettings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Gateway:
    settings: GatewaySettings
    keys: Keys
    redis: aredis.Redis  # API calls and replays (a small blocking pool)
    reader_redis: aredis.Redis  # the hub's blocking XREAD, alone on its connection
    hub: Hub
    auth: Authenticator
    limiter: SignInLimiter

    def readiness(self) -> dict[str, bool]:
        return {
            "redis": self.hub.reader_up,
            "reader": self.hub.loaded.is_set(),
            "not_draining": not self.hub.draining,
        }

    def cookie_secure(self, request: Request) -> bool:
        if self.settings.cookie_secure is not None:
            return self.settings.cookie_secure
        return request.url.scheme == "https"

    def check_origin(self, request: Request) -> None:
        """A state-changing request carried by a cookie must come from our own pages."""
        if request.method in SAFE_METHODS:
            return
        origin = request.headers.get("origin")
        if origin is None:
            if request.headers.get("sec-fetch-site") == "cross-site":
                metrics.REJECTED.labels("cross_site").inc()
                raise HTTPException(403, "cross-site request refused")
            return
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != own and origin not in self.settings.cors_origins:
            metrics.REJECTED.labels("bad_origin").inc()
            raise HTTPException(403, "request from a foreign origin refused")


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def client_addr(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def require_session(request: Request, gateway: Annotated[Gateway, Depends(get_gateway)]) -> Session:
    session = gateway.auth.from_headers(request.scope["headers"])
    if session is None:
        metrics.REJECTED.labels("unauthenticated").inc()
        raise HTTPException(401, "sign in first: no valid session", {"WWW-Authenticate": "Bearer"})
    if session.via == "cookie":
        gateway.check_origin(request)
    return session


CurrentSession = Annotated[Session, Depends(require_session)]
