"""The notifier's Prometheus metrics (``wxstream_notifier_*``); REDIS_UP lives in shared."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_COUNTED: Final = Counter(
    "wxstream_notifier_messages_counted", "Messages that raised the unread count"
)
DUPLICATES: Final = Counter(
    "wxstream_notifier_duplicates",
    "Deliveries not counted because their message id or entry was counted already",
)
READ_BEFORE_MARK: Final = Counter(
    "wxstream_notifier_read_before_mark",
    "Entries not counted because they were in the stream when the last mark_read applied",
)
CLAIMS: Final = Counter(
    "wxstream_notifier_claims", "Pending entries claimed from idle consumers (XAUTOCLAIM)"
)
PENDING: Final = Gauge(
    "wxstream_notifier_pending",
    "Entries delivered to the notifier group and not yet acknowledged",
    ["stream"],
)
PUBLISH_LAG: Final = Histogram(
    "wxstream_notifier_publish_lag_seconds",
    "From a message's producer timestamp to the XADD of the notification that counts it",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30, 60),
)
NOTIFICATIONS: Final = Counter(
    "wxstream_notifier_notifications", "notification events appended to the events stream"
)
UNREAD: Final = Gauge("wxstream_notifier_unread", "The unread count this process saw last")
DEAD_LETTERS: Final = Counter(
    "wxstream_notifier_dead_letters", "Malformed entries copied to the dead-letter stream"
)
MARKED_READ: Final = Counter(
    "wxstream_notifier_marked_read", "mark_read commands applied (each one exactly once)"
)
