"""``GET /stream``: the SSE endpoint, as a raw ASGI app.

Raw ASGI rather than a streaming response: per connection it holds the request's own task,
which starts the stream (state, resume or reset), hands it to the hub and then only waits
for the disconnect, and a cursor into the hub's shared tail — nothing that grows with the
number of events. The hub writes the live events (``hub.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import redis.asyncio as aredis
from redis.exceptions import RedisError

from shared.streams import StreamId, parse_stream_id

from . import metrics
from .auth import Authenticator
from .hub import Client, Hub, HubState, reset_bytes, state_bytes, write
from .replay import HistoryGap, Plan, history, plan_start, raw_view
from .settings import GatewaySettings
from .sse import HEADERS, retry_frame

log = logging.getLogger("wxstream.gateway.stream")

# How long the response's final chunk may wait for a full socket to drain.
END_WRITE_SECONDS = 5.0

Scope = dict[str, Any]
Message = dict[str, Any]


class BadRequest(ValueError):
    pass


def last_event_id(scope: Scope) -> StreamId | None:
    """``Last-Event-ID`` (sent by the browser on a reconnect) or ``?lastEventId=``."""
    raw: str | None = None
    for name, value in scope["headers"]:
        if name == b"last-event-id":
            raw = value.decode("latin-1")
            break
    if raw is None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        values = query.get("lastEventId")
        raw = values[0] if values else None
    if raw is None or raw.strip() == "":
        return None
    try:
        return parse_stream_id(raw.strip())
    except ValueError:
        raise BadRequest("Last-Event-ID must be a stream id like 1700000000000-0") from None


async def send_json(send: Any, status: int, body: dict[str, object], retry_after: int = 0) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if retry_after:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str  # the label of wxstream_gateway_rejected_total
    message: str
    retry: int = 0  # Retry-After seconds, if any


class StreamEndpoint:
    def __init__(
        self, hub: Hub, redis: aredis.Redis, auth: Authenticator, settings: GatewaySettings
    ) -> None:
        self.hub = hub
        self.redis = redis
        self.history_redis = raw_view(redis)
        self.auth = auth
        self.settings = settings
        self.per_addr: Counter[str] = Counter()

    def _admit(self, scope: Scope) -> Refusal | tuple[str, StreamId | None]:
        """The client's address and id, or why the stream is refused."""
        if scope["method"] not in ("GET", "HEAD"):
            return Refusal(405, "method_not_allowed", "method not allowed: use GET")
        if self.auth.from_headers(scope["headers"]) is None:
            return Refusal(401, "unauthenticated", "sign in first: no valid session")
        try:
            last_id = last_event_id(scope)
        except BadRequest as exc:
            return Refusal(400, "bad_last_event_id", str(exc))
        addr = (scope.get("client") or ("unknown", 0))[0]
        if self.hub.draining:
            return Refusal(503, "draining", "stream refused: draining", 1)
        if len(self.hub.clients) >= self.settings.max_streams:
            return Refusal(503, "too_many_streams", "stream refused: too_many_streams", 5)
        if self.per_addr[addr] >= self.settings.max_streams_per_client:
            reason = "too_many_streams_from_address"
            return Refusal(429, reason, f"stream refused: {reason}", 10)
        if not self.hub.loaded.is_set():
            return Refusal(503, "not_ready", "stream not ready: Redis unreachable", 2)
        return addr, last_id

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        # One coroutine for the whole stream, on purpose: each frame an open stream stays
        # suspended in costs ~300 bytes, times every open stream.
        admitted = self._admit(scope)
        if isinstance(admitted, Refusal):
            metrics.REJECTED.labels(admitted.reason).inc()
            await send_json(send, admitted.status, {"error": admitted.message}, admitted.retry)
            return
        addr, last_id = admitted
        hub = self.hub
        task = asyncio.current_task()
        client = Client(addr=addr, task=task, send=send)
        self.per_addr[addr] += 1
        try:
            snap = hub.register(client)
            try:
                # Before the headers: a resume that needs Redis while it is unreachable is
                # a 503 the client retries, not a 200 that breaks off.
                plan = await plan_start(hub, self.redis, client, snap, last_id)
            except RedisError:
                hub.unregister(client)
                metrics.REJECTED.labels("redis_unavailable").inc()
                await send_json(send, 503, {"error": "stream not ready: Redis unreachable"}, 2)
                return
            except asyncio.CancelledError:
                hub.unregister(client)
                if not _cut_by_hub(task, client):
                    raise
                # Cut off (the hub moved on too far) while waiting to start.
                metrics.REJECTED.labels(client.closing or "slow").inc()
                await send_json(send, 503, {"error": f"stream not started: {client.closing}"}, 1)
                return
            except BaseException:
                hub.unregister(client)
                raise
            reason: str | None = "client"
            try:
                await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
                await write(
                    client, retry_frame(self.settings.retry_ms, self.settings.retry_jitter_ms)
                )
                metrics.RESUMES.labels(plan.source).inc()
                if plan.source == "redis":
                    # A replay can be long: notice meanwhile if the client leaves.
                    watcher = asyncio.create_task(_watch_disconnect(receive, client))
                    try:
                        await self._write_start(client, plan, snap)
                    finally:
                        watcher.cancel()
                else:
                    await self._write_start(client, plan, snap)
                client.last_write = asyncio.get_running_loop().time()
                reason = await hub.follow(client)
                if reason is None:
                    # Parked: the hub writes from here on; this task waits for the disconnect.
                    client.live = True
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    reason = client.closing = client.closing or "client"
            except RedisError as exc:
                # The history read broke off: end the stream; the client resumes from its id.
                reason = "redis_error"
                log.warning("replay_redis_error", extra={"error": type(exc).__name__})
            except asyncio.CancelledError:
                if not _cut_by_hub(task, client):
                    raise
                reason = client.closing
            finally:
                hub.unregister(client)
            metrics.DISCONNECTS.labels(reason).inc()
            if not client.writing:
                # End the response properly; a client cut mid-write (stuck behind a full
                # socket) gets its connection closed by uvicorn instead.
                await self._end(send)
        finally:
            self.per_addr[addr] -= 1
            if self.per_addr[addr] <= 0:
                del self.per_addr[addr]

    @staticmethod
    async def _end(send: Any) -> None:
        """The response's last chunk, given a bounded time: the socket may be full."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(END_WRITE_SECONDS):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _write_start(self, client: Client, plan: Plan, snap: HubState) -> None:
        if plan.source == "state":
            data = state_bytes(snap)
            if data:
                await write(client, data)
        elif plan.source == "reset":
            await write(client, reset_bytes(snap, plan.reason or "unknown_id"))
        elif plan.source == "redis":
            pages = history(self.history_redis, self.hub.key, plan, self.settings.replay_page)
            try:
                async with contextlib.aclosing(pages):
                    async for page in pages:
                        if client.closing is not None:  # left, or drained: stop reading
                            return
                        await write(client, page)
            except HistoryGap:
                metrics.RESUMES.labels("reset").inc()
                await write(client, reset_bytes(snap, "trimmed"))


def _cut_by_hub(task: asyncio.Task[Any] | None, client: Client) -> bool:
    """Whether the cancel being handled is ``Hub.cut``'s alone (then it is consumed); any
    other cancel (the server shutting down) must go on."""
    if task is None or not client.hub_cancelled:
        return False
    client.hub_cancelled = False
    return task.uncancel() == 0


async def _watch_disconnect(receive: Any, client: Client) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    client.closing = client.closing or "client"
