"""The operations endpoint every service serves: ``/healthz``, ``/readyz`` and ``/metrics``.

It listens on its own port (``WX_OPS_PORT``) so Prometheus can reach it inside the cluster
while the Ingress exposes only the gateway's public port. Services own their signals: the
uvicorn server here never installs signal handlers of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Readiness = Callable[[], dict[str, bool]]

OPS_PATHS = ("/healthz", "/readyz", "/metrics")


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves SIGTERM and SIGINT to the service that embeds it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def health_routes(readiness: Readiness) -> list[Route]:
    """``/healthz`` (the process answers) and ``/readyz`` (every check passes)."""

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        checks = readiness()
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    return [Route("/healthz", healthz), Route("/readyz", readyz)]


def metrics_route(registry: CollectorRegistry = REGISTRY) -> Route:
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", metrics)


def ops_app(readiness: Readiness, registry: CollectorRegistry = REGISTRY) -> Starlette:
    return Starlette(routes=[*health_routes(readiness), metrics_route(registry)])


def ops_server(host: str, port: int, readiness: Readiness) -> EmbeddedServer:
    """Build (not start) the ops server; ``await server.serve()`` inside the service's loop."""
    config = uvicorn.Config(
        ops_app(readiness),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    return EmbeddedServer(config)
