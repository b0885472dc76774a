"""Structured logging: one JSON object a line in production, ``key=value`` text locally.

Call sites log an event name plus fields: ``log.info("qr_issued", extra={"uuid_hash": h})``.
Nothing here ever formats message text, cookies, tickets or QR payloads: callers pass ids
and counts, and :data:`REDACTED_FIELDS` are dropped if they slip in anyway.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Final, Literal

REDACTED_FIELDS: Final = frozenset(
    {"text", "content", "cookie", "cookies", "ticket", "secret", "password", "qrcode", "extra"}
)

# Attributes every LogRecord has; anything else was passed through ``extra=``.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "color_message"}
)

_context: dict[str, str] = {}


def bind(**fields: str) -> None:
    """Fields added to every line of this process (service name, account)."""
    _context.update(fields)


def _fields(record: logging.LogRecord) -> dict[str, object]:
    out: dict[str, object] = dict(_context)
    for key, value in vars(record).items():
        if key in _STANDARD or key.startswith("_"):
            continue
        out[key] = "[redacted]" if key in REDACTED_FIELDS else value
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        pairs = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()} {pairs}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line.rstrip()


def setup(level: str = "INFO", fmt: Literal["text", "json"] = "text") -> None:
    """Configure the root logger once, for a service's ``main``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that log request lines or payloads stay quiet unless asked for.
    for noisy in ("itchat", "uvicorn.access", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
