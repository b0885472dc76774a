"""Metrics every service exports, named once so alerts and dashboards agree."""

from __future__ import annotations

from typing import Final

from prometheus_client import Gauge

REDIS_UP: Final = Gauge(
    "wxstream_redis_up", "1 while this service's last Redis command succeeded, else 0"
)
