"""Redis clients with deliberate timeouts, pool sizes and retries (redis-py 8's defaults bite).

redis-py 8 times sockets out after 5 s and caps the asyncio pool at 100 connections: a
blocking ``XREAD BLOCK 15000`` dies with a timeout and a fan-out of readers hits the cap.
Every service builds its clients here, so a stalled connection (a network that stops
forwarding without closing) is noticed after ``timeout`` plus any block time, never silently hangs.
"""

from __future__ import annotations

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

# A short retry for commands in flight when a connection breaks; the services' own loops
# handle longer outages with their own backoff and report not-ready meanwhile. Never on a
# timeout: a command that timed out may well have run (a stalled link delivers it late), and
# running XADD or XREADGROUP again is not idempotent — a second XADD duplicates the entry, a
# second XREADGROUP strands the first one's entries in the consumer's PEL. The caller sees the
# timeout and decides (the notifier re-reads its PEL, producers retry knowingly).
_RETRIES = 2
# Replies are decoded as UTF-8; a byte sequence that is not (a hand-written XADD, a producer
# bug) becomes U+FFFD instead of raising inside the parser. Strict decoding made one such
# entry a poison pill: every XREAD/XREADGROUP/XRANGE over it failed, for ever, and a reader
# stayed stuck on it. Now the entry reads as malformed and is skipped or dead-lettered.
ENCODING_ERRORS = "replace"
_ERRORS: tuple[type[redis.RedisError], ...] = (redis.ConnectionError,)


def async_client(
    url: str, *, timeout: float, block_seconds: float = 0.0, max_connections: int = 8
) -> aredis.Redis:
    """An asyncio client whose reads may block up to ``block_seconds`` beyond ``timeout``."""
    # A blocking pool: past ``max_connections`` callers wait for a free connection instead
    # of failing, so a burst of requests never opens more connections than we chose.
    pool = aredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        encoding_errors=ENCODING_ERRORS,
        socket_timeout=timeout + block_seconds,
        socket_connect_timeout=timeout,
        socket_keepalive=True,
        health_check_interval=30,
        max_connections=max_connections,
        timeout=timeout + block_seconds,
        retry=AsyncRetry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), _RETRIES, _ERRORS),
        retry_on_error=list(_ERRORS),
    )
    # from_pool: the client owns the pool, so aclose() closes its connections too.
    return aredis.Redis.from_pool(pool)


def sync_client(
    url: str, *, timeout: float, block_seconds: float = 0.0, max_connections: int = 8
) -> redis.Redis:
    """The threaded twin of :func:`async_client`, for the login service's itchat threads."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        encoding_errors=ENCODING_ERRORS,
        socket_timeout=timeout + block_seconds,
        socket_connect_timeout=timeout,
        socket_keepalive=True,
        health_check_interval=30,
        max_connections=max_connections,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), _RETRIES, _ERRORS),
        retry_on_error=list(_ERRORS),
    )
