"""Assemble the simulator's ASGI app: protocol routes, control routes, request tap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware

from . import control, phone, protocol
from .state import SimConfig, SimState
from .tap import RequestTap


def create_app(state: SimState | None = None) -> Starlette:
    sim = state or SimState(SimConfig())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        sim.close()

    app = Starlette(
        routes=[*protocol.routes(), *control.routes(), *phone.routes()],
        middleware=[Middleware(RequestTap, state=sim)],
        lifespan=lifespan,
    )
    app.state.sim = sim
    return app
