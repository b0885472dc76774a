"""The gateway's Prometheus metrics."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from itertools import accumulate
from typing import Final

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector


class BatchHistogram(Collector):
    """A histogram that takes ``n`` equal observations at once.

    The hub writes one chunk to thousands of streams in one loop; observing each write with
    prometheus-client's ``Histogram`` (a lock and a search per call) would cost more than
    the write. Written only from the event loop's thread; read by the scrape.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self._name = name
        self._doc = documentation
        self._upper = [*sorted(buckets), math.inf]
        self._counts = [0] * len(self._upper)
        self._sum = 0.0
        REGISTRY.register(self)

    def observe(self, value: float, n: int = 1) -> None:
        self._counts[bisect.bisect_left(self._upper, value)] += n
        self._sum += value * n

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative = list(accumulate(self._counts))
        yield HistogramMetricFamily(
            self._name,
            self._doc,
            buckets=[(_le(b), c) for b, c in zip(self._upper, cumulative, strict=True)],
            sum_value=self._sum,
        )


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


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


DELIVERY_LAG: Final = BatchHistogram(
    "wxstream_gateway_delivery_lag_seconds",
    "Producer timestamp of the newest event in a write to the moment it is written",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
READER_BATCH: Final = Histogram(
    "wxstream_gateway_reader_batch_size",
    "Entries returned by one XREAD of the hub's reader",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
PAUSED_WRITES: Final = Counter(
    "wxstream_gateway_paused_writes_total",
    "Writes of the hub that found a client's socket full; the client's own task finished them",
)
READER_UP: Final = Gauge("wxstream_gateway_reader_up", "1 while the hub's stream reader is healthy")
TAIL_EVENTS: Final = Gauge("wxstream_gateway_tail_events", "Events held in the in-memory tail")
TAIL_BYTES: Final = Gauge(
    "wxstream_gateway_tail_bytes", "Encoded bytes of the events held in the in-memory tail"
)
MALFORMED: Final = Counter(
    "wxstream_gateway_malformed_entries_total", "Stream entries skipped as not relayable"
)
EPOCHS: Final = Counter(
    "wxstream_gateway_stream_epochs_total", "Times the events stream was found lost and reloaded"
)
