# mypy: ignore-errors
"""Peer 2, the naive FastAPI approach: sse-starlette and one blocking XREAD per client.

What most FastAPI tutorials end up with: every open stream runs its own loop of
``XREAD BLOCK`` on the events stream, from ``Last-Event-ID`` when the browser sends one
(else ``$``), and yields each entry as an SSE event. The only departures from the
defaults are the two redis-py 8 fixes LESSONS.md names (no 5 s socket timeout under a
15 s block; a pool big enough for one connection per client), without which it fails
outright rather than slowly.

Run (from ``bench/.peers/venv``):
    uvicorn --app-dir bench/peers xread_app:app --loop uvloop --http httptools
with ``REDIS_URL`` and ``STREAM_KEY`` in the environment.
"""

import os

import redis.asyncio as aredis
from fastapi import FastAPI, Request
from sse_starlette.sse import EventSourceResponse

STREAM_KEY = os.environ["STREAM_KEY"]
redis = aredis.Redis.from_url(
    os.environ["REDIS_URL"],
    decode_responses=True,
    socket_timeout=None,
    max_connections=int(os.environ.get("REDIS_MAX_CONNECTIONS", "50000")),
)
app = FastAPI()


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


@app.get("/stream")
async def stream(request: Request):
    last_id = request.headers.get("last-event-id") or "$"

    async def events():
        nonlocal last_id
        while True:
            reply = await redis.xread({STREAM_KEY: last_id}, block=15_000, count=100)
            for _key, entries in reply or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    yield {"id": entry_id, "event": fields["event"], "data": fields["data"]}

    return EventSourceResponse(events())
