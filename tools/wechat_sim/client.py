"""A small typed, synchronous client for the simulator's control API (``/_sim/``)."""

from __future__ import annotations

import base64
import json
from types import TracebackType
from typing import Any, cast

import httpx

from .state import StateView


class SimError(Exception):
    """The control API refused a request (``{"error": ...}`` with a 4xx status)."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(f"{status}: {error}")
        self.status = status
        self.error = error


class SimClient:
    def __init__(self, control_url: str, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=control_url.rstrip("/") + "/", timeout=timeout)

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        # ASCII-escaped JSON, so that hostile raw entries may hold lone surrogates (which
        # httpx's own UTF-8 encoding of ``json=`` refuses).
        content = None if body is None else json.dumps(body)
        headers = None if body is None else {"content-type": "application/json"}
        response = self._http.request(
            method,
            path,
            content=content,
            headers=headers,
            params=params,
            timeout=timeout if timeout is not None else self._http.timeout,
        )
        payload = response.json()
        if response.status_code >= 400:
            raise SimError(response.status_code, str(payload.get("error", payload)))
        return payload

    def state(self) -> StateView:
        return cast(StateView, self._call("GET", "state"))

    def wait(
        self,
        *,
        phase: str | None = None,
        endpoint: str | None = None,
        count: int = 1,
        sent: int | None = None,
        timeout: float = 5.0,
    ) -> StateView:
        """Block until the simulator reaches the condition; SimError(408) at the deadline."""
        params = {"timeout": str(timeout), "count": str(count)}
        if phase is not None:
            params["phase"] = phase
        if endpoint is not None:
            params["endpoint"] = endpoint
        if sent is not None:
            params["sent"] = str(sent)
        return cast(StateView, self._call("GET", "wait", params=params, timeout=timeout + 5))

    def scan(self) -> str:
        return str(self._call("POST", "scan")["uuid"])

    def confirm(self) -> str:
        return str(self._call("POST", "confirm")["uuid"])

    def expire(self) -> str:
        return str(self._call("POST", "expire")["uuid"])

    def refuse(self, enabled: bool = True) -> None:
        self._call("POST", "refuse", {"enabled": enabled})

    def push_login(self, enabled: bool = True) -> None:
        self._call("POST", "push_login", {"enabled": enabled})

    def message(
        self,
        kind: str = "friend",
        type: str = "text",
        text: str | None = None,
        from_: str | None = None,
        sender: str | None = None,
    ) -> str:
        body: dict[str, Any] = {"kind": kind, "type": type}
        if text is not None:
            body["text"] = text
        if from_ is not None:
            body["from"] = from_
        if sender is not None:
            body["sender"] = sender
        return str(self._call("POST", "message", body)["msg_id"])

    def raw_message(self, entry: Any) -> str:
        """Deliver ``entry`` into the next AddMsgList exactly as given."""
        return str(self._call("POST", "message", {"raw": entry})["msg_id"])

    def fault(
        self,
        endpoint: str,
        body: str | bytes = "",
        *,
        status: int = 200,
        times: int = 1,
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        """Make the next ``times`` requests to ``endpoint`` (e.g. "webwxsync") get this answer."""
        request: dict[str, Any] = {
            "endpoint": endpoint,
            "status": status,
            "times": times,
            "content_type": content_type,
        }
        if isinstance(body, bytes):
            request["body_base64"] = base64.b64encode(body).decode("ascii")
        else:
            request["body"] = body
        self._call("POST", "fault", request)

    def end(self, retcode: int = 1101) -> None:
        self._call("POST", "end", {"retcode": retcode})

    def reset(self) -> StateView:
        return cast(StateView, self._call("POST", "reset"))

    def sent(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._call("GET", "sent")["sent"])

    def contacts(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "contacts"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SimClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
