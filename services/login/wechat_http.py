r"""What the login service adds to itchat's HTTP session (``core.s``), without patching itchat.

* :class:`WireWatch` is a ``requests`` response hook. It keeps what itchat reads and throws
  away: the avatar data URL of the 201 "scanned" answer, the synccheck ``retcode`` that ends
  a session (1100/1101/1102), the ``<ret>``/``<message>`` of a refused login (1203), and the
  raw ``AddMsgList`` of each webwxsync — so that a batch itchat fails to process (its
  ``produce_msg`` raises on malformed entries and the whole batch is gone) can still be
  stored from the raw entries.
  It also withholds from itchat the few entries that would hang it: itchat runs lazy regexes
  over the whole body of some message types (``(.+?\(.+?\))`` for a location,
  ``\[CDATA\[(.+?)\]`` for recalls and app type 2000), which take quadratic time while
  holding the GIL — a 2 MB body froze the whole process (lease, ops server, pump) for hours.
  Such an entry is cut from the answer itchat parses and stored from the raw entry.
* :class:`GatedAdapter` is a transport adapter mounted on the session. Before every request
  it asks a gate whether this process may still talk to WeChat (the attempt was not
  cancelled, the lease is still ours); and it gives every request a timeout, because itchat
  sets one only on synccheck and webwxsync — a server that hangs would hang it for ever.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import requests
from requests.adapters import HTTPAdapter

_AVATAR: Final = re.compile(r"window\.userAvatar\s*=\s*'([^']*)'")
_CODE: Final = re.compile(r"window\.code=(\d+)")
_SYNC: Final = re.compile(r'window\.synccheck=\{retcode:"(\d+)",selector:"(\d+)"\}')
_RET: Final = re.compile(r"<ret>(-?\d+)</ret>")
_MESSAGE: Final = re.compile(r"<message>(.*?)</message>", re.DOTALL)

MAX_AVATAR_CHARS: Final = 512 * 1024
# Longest body itchat may run its quadratic regexes over: about 0.4 s of a frozen process.
ITCHAT_REGEX_MAX_CHARS: Final = 8 * 1024

log = logging.getLogger(__name__)


def hangs_itchat(entry: dict[str, Any]) -> bool:
    """True for an entry whose body is too long for itchat's regexes (see the module doc)."""
    content = entry.get("Content")
    if not isinstance(content, str) or len(content) <= ITCHAT_REGEX_MAX_CHARS:
        return False
    # The same comparisons as itchat's produce_msg, so exactly the branches that run them.
    msg_type = entry.get("MsgType")
    return (
        (msg_type == 1 and bool(entry.get("Url")))
        or msg_type == 10002
        or (msg_type == 49 and entry.get("AppMsgType") == 2000)
    )


class GateClosed(requests.exceptions.ConnectionError):
    """This process may no longer talk to WeChat for this attempt."""


class WireWatch:
    """A response hook recording the bits of WeChat's answers that itchat ignores."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.avatars: dict[str, str] = {}
        # The last synccheck outcome: a retcode ("0" fine), "http_error" or "unparseable".
        self.last_sync: str | None = None
        self.login_ret: str | None = None
        self.login_message: str | None = None
        self.progress_at = time.monotonic()
        # The raw AddMsgList of the last webwxsync, until the next synccheck closes it.
        self.open_batch: list[dict[str, Any]] = []

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        path = urlsplit(response.url).path
        if path.endswith("/jslogin"):
            return  # answered, but not progress: itchat retries a failing jslogin for ever
        self.progress_at = time.monotonic()
        if path.endswith("/mmwebwx-bin/login"):
            self._login_poll(response)
        elif path.endswith("/synccheck"):
            self._synccheck(response)
        elif path.endswith("/webwxnewloginpage"):
            self._redirect(response)
        elif path.endswith("/webwxsync"):
            self._sync(response)

    def _login_poll(self, response: requests.Response) -> None:
        text = response.text
        code = _CODE.search(text)
        if code is None or code.group(1) != "201":
            return
        avatar = _AVATAR.search(text)
        uuid = parse_qs(urlsplit(response.url).query).get("uuid", [""])[0]
        if avatar and uuid and len(avatar.group(1)) <= MAX_AVATAR_CHARS:
            with self._lock:
                self.avatars[uuid] = avatar.group(1)

    def _synccheck(self, response: requests.Response) -> None:
        if response.status_code >= 400:
            self.last_sync = "http_error"
            return
        match = _SYNC.search(response.text)
        self.last_sync = match.group(1) if match else "unparseable"

    def _redirect(self, response: requests.Response) -> None:
        text = response.text
        ret = _RET.search(text)
        message = _MESSAGE.search(text)
        self.login_ret = ret.group(1) if ret else None
        self.login_message = message.group(1).strip()[:500] if message else None

    def _sync(self, response: requests.Response) -> None:
        try:
            answer = response.json()
            added = answer.get("AddMsgList")
        except (ValueError, AttributeError):
            return
        if not isinstance(added, list):
            return
        entries = [entry for entry in added if isinstance(entry, dict)]
        with self._lock:
            self.open_batch.extend(entries)
        kept = [entry for entry in added if not (isinstance(entry, dict) and hangs_itchat(entry))]
        if len(kept) < len(added):
            # itchat reads the body as UTF-8 JSON (r.content); the raw entries in the batch
            # still hold the withheld ones, so the pump stores them.
            answer["AddMsgList"], answer["AddMsgCount"] = kept, len(kept)
            response._content = json.dumps(answer).encode("ascii")
            log.warning("entries_withheld_from_itchat", extra={"count": len(added) - len(kept)})

    def close_batch(self) -> list[dict[str, Any]]:
        """The raw entries received since the last call (itchat has processed them by now)."""
        with self._lock:
            batch, self.open_batch = self.open_batch, []
        return batch

    def avatar(self, uuid: str | None) -> str | None:
        if uuid is None:
            return None
        with self._lock:
            return self.avatars.get(uuid)


Timeout = float | tuple[float, float] | tuple[float, None] | None


class GatedAdapter(HTTPAdapter):
    """Checks ``gate(request)`` before every request and supplies a default timeout."""

    def __init__(
        self, gate: Callable[[requests.PreparedRequest], None], timeout: tuple[float, float]
    ) -> None:
        super().__init__()
        self._gate = gate
        self._timeout = timeout

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Timeout = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        self._gate(request)
        return super().send(
            request,
            stream=stream,
            timeout=self._timeout if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


def instrument(
    session: requests.Session,
    watch: WireWatch,
    gate: Callable[[requests.PreparedRequest], None],
    timeout: tuple[float, float],
) -> None:
    """Mount the gated adapter and the response hook on itchat's session."""
    adapter = GatedAdapter(gate, timeout)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.hooks["response"].append(watch)
