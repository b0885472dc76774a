"""Import itchat quietly and keep its log lines (and urllib3's) free of secrets.

Importing itchat writes a block character to stdout and attaches its own console handler
to the ``itchat`` logger. Its log lines carry tracebacks whose exception messages hold full
URLs (skey, pass_ticket, sid, uuid in the query string), raw server answers and whole
messages at DEBUG. The filter here sits on the root handlers, so it sees every record:
itchat's lines pass only when they are one of its fixed, harmless sentences; anything else
is reduced to the exception type, with every query string cut; urllib3's and requests'
lines keep their text with query strings cut.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from types import ModuleType
from typing import Final

SAFE_ITCHAT_LINES: Final = frozenset(
    {
        "Getting uuid of QR code.",
        "Downloading QR code.",
        "Please scan the QR code to log in.",
        "Please press confirm on your phone.",
        "Log in time out, reloading QR code.",
        "Loading the contact, this may take a little while.",
        "LOG OUT!",
        "Start auto replying.",
        "Bye~",
        "No such file, loading login status failed.",
        "server refused, loading login status failed.",
        "loading login status succeeded.",
        "Dump login status for hot reload successfully.",
        "You can't get access to internet or wechat domain, so exit.",
        "itchat has already logged in.",
        "Load status for push login failed, we may have experienced a cookies change.",
    }
)

_QUERY: Final = re.compile(r"\?[^\s'\"()<>]*")
_SECRET_PARAM: Final = re.compile(
    r"(?i)\b(skey|pass_ticket|ticket|sid|wxsid|uin|wxuin|uuid|deviceid|synckey|"
    r"webwx_data_ticket|webwx_auth_ticket|mediaid|msgid|username|redirect_uri)=[^&\s'\"]*"
)


def redact(text: str) -> str:
    """Cut every query string and any ``secret=value`` pair left outside one."""
    return _SECRET_PARAM.sub(r"\1=[redacted]", _QUERY.sub("?[redacted]", text))


class RedactingFilter(logging.Filter):
    """Attach to every root handler: rewrites itchat/urllib3/requests records in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name == "itchat" or name.startswith("itchat."):
            self._itchat(record)
        elif name.startswith(("urllib3", "requests")):
            text = redact(record.getMessage())
            record.msg, record.args = text, None
            if record.exc_info and record.exc_info[1] is not None:
                record.msg = f"{text} ({type(record.exc_info[1]).__name__})"
            record.exc_info, record.exc_text = None, None
        return True

    @staticmethod
    def _itchat(record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message in SAFE_ITCHAT_LINES:
            return
        if message.startswith("Traceback"):
            last = message.strip().splitlines()[-1]
            text = "itchat error: " + redact(last)[:300]
        else:
            text = "itchat log line withheld (may carry message text or tickets)"
        record.msg, record.args = text, None
        record.exc_info, record.exc_text, record.stack_info = None, None, None


def install_redaction() -> None:
    """Add the filter to the root logger's handlers (call after shared.log.setup)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def import_itchat() -> ModuleType:
    """``import itchat`` without its stdout write and console handler."""
    with contextlib.redirect_stdout(io.StringIO()):
        import itchat
    logger = logging.getLogger("itchat")
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler:
            logger.removeHandler(handler)
    # itchat's LogSystem would re-add its handler if asked to show on the console again.
    itchat.log.ls.showOnCmd = False
    logger.setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    module: ModuleType = itchat
    return module
