"""The gateway's Prometheus metrics."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS: Final = Gauge("wxstream_gateway_connections", "Open SSE streams")
DELIVERED: Final = Counter(
    "wxstream_gateway_events_delivered_total", "Events written to SSE clients (per client)"
)
RESUMES: Final = Counter(
    "wxstream_gateway_resumes_total",
    "Streams opened, by where their start came from",
    ["source"],  # state (no id), memory, redis, reset
)
DISCONNECTS: Final = Counter(
    "wxstream_gateway_disconnects_total", "Streams ended, by reason", ["reason"]
)
REJECTED: Final = Counter(
    "wxstream_gateway_rejected_total", "Stream or API requests refused, by reason", ["reason"]
)
DELIVERY_LAG: Final = Histogram(
    "wxstream_gateway_delivery_lag_seconds",
    "Producer timestamp of the newest event in a write to the moment it is written",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
READER_BATCH: Final = Histogram(
    "wxstream_gateway_reader_batch_size",
    "Entries returned by one XREAD of the hub's reader",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
READER_UP: Final = Gauge("wxstream_gateway_reader_up", "1 while the hub's stream reader is healthy")
TAIL_EVENTS: Final = Gauge("wxstream_gateway_tail_events", "Events held in the in-memory tail")
MALFORMED: Final = Counter(
    "wxstream_gateway_malformed_entries_total", "Stream entries skipped as not relayable"
)
EPOCHS: Final = Counter(
    "wxstream_gateway_stream_epochs_total", "Times the events stream was found lost and reloaded"
)
