"""Builds the gateway's ASGI app: the stream, the API, health checks and the dashboard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from shared.ops_server import health_routes
from shared.redis_client import async_client

from . import api
from .auth import Authenticator, SignInLimiter
from .deps import Gateway, require_session
from .front import Front
from .hub import Hub
from .limits import SizeLimits
from .settings import GatewaySettings
from .stream import StreamEndpoint

STATIC = Path(__file__).parent / "static"


def build_gateway(settings: GatewaySettings) -> Gateway:
    keys = settings.keys
    reader = async_client(
        settings.redis_url,
        timeout=settings.redis_timeout_seconds,
        block_seconds=settings.read_block_ms / 1000,
        max_connections=1,
    )
    hub = Hub(
        reader,
        keys.events,
        tail_size=settings.tail_size,
        tail_max_bytes=settings.tail_max_bytes,
        max_lag=settings.max_lag,
        read_batch=settings.read_batch,
        read_block_ms=settings.read_block_ms,
        keepalive_seconds=settings.keepalive_seconds,
    )
    return Gateway(
        settings=settings,
        keys=keys,
        redis=async_client(
            settings.redis_url, timeout=settings.redis_timeout_seconds, max_connections=2
        ),
        reader_redis=reader,
        hub=hub,
        auth=Authenticator(settings),
        limiter=SignInLimiter(settings.sign_in_attempts_per_minute),
    )


def _error_body(status: int, detail: Any) -> dict[str, Any]:
    message = detail if isinstance(detail, str) else "request failed"
    return {"error": message, "status": status}


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    gateway = build_gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway.hub.start()
        yield
        await gateway.hub.stop()
        await gateway.reader_redis.aclose()
        await gateway.redis.aclose()

    app = FastAPI(
        title="wxstream gateway",
        summary="Live WeChat account events over SSE, and the dashboard's API.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.gateway = gateway

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            _error_body(exc.status_code, exc.detail), exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", ""))}
            for err in exc.errors()
        ]
        return JSONResponse({"error": "invalid request", "status": 422, "details": details}, 422)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )

    app.add_middleware(SizeLimits)

    for route in health_routes(gateway.readiness):
        app.router.routes.append(route)
    # The hub's blocking XREAD has its connection to itself; replays share the API's pool.
    stream = StreamEndpoint(gateway.hub, gateway.redis, gateway.auth, settings)
    app.state.stream = stream
    app.router.routes.append(Route("/stream", stream, methods=["GET"], name="stream"))
    app.include_router(api.router)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_session)])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(require_session)])
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="wxstream API")

    @app.api_route(
        "/api/{rest:path}",
        methods=["GET", "POST", "DELETE"],
        include_in_schema=False,
        dependencies=[Depends(require_session)],
    )
    async def api_not_found(rest: str) -> None:
        raise HTTPException(404, f"no such API endpoint: /api/{rest[:100]}")

    if STATIC.is_dir():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="dashboard")
    return app


def serving_app(app: FastAPI) -> Front:
    """What uvicorn serves: the app behind the front that takes ``/stream`` directly. The
    stream's route stays in the app too, so the route table is complete."""
    gateway: Gateway = app.state.gateway
    return Front(app, app.state.stream, gateway.settings.cors_origins)
