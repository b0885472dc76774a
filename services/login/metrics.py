"""The login service's Prometheus metrics; alert rules use these exact names."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

LOGGED_IN: Final = Gauge(
    "wxstream_login_logged_in", "1 while this process holds a logged-in WeChat session, else 0"
)
LEASE_HELD: Final = Gauge(
    "wxstream_login_lease_held", "1 while this process owns the account's login lease, else 0"
)
QR_CODES: Final = Counter("wxstream_login_qr_codes", "QR codes published for scanning")
LOGINS: Final = Counter(
    "wxstream_login_logins", "Sessions that reached logged in, by path", ["via"]
)
LOGOUTS: Final = Counter("wxstream_login_logouts", "Sessions that ended, by reason", ["reason"])
MESSAGES: Final = Counter(
    "wxstream_login_messages", "Received WeChat messages appended to the stream", ["type"]
)
WECHAT_ERRORS: Final = Counter(
    "wxstream_login_wechat_errors",
    "Failed login attempts and broken sessions, by kind",
    ["kind"],
)
FENCED: Final = Counter(
    "wxstream_login_fenced_publishes",
    "Appends refused because this process no longer held the lease",
)
COMMANDS: Final = Counter(
    "wxstream_login_commands", "Commands read from the commands stream, by outcome", ["outcome"]
)
