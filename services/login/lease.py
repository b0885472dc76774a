"""One owner per account: a fenced lease in Redis, and the thread that keeps it.

The lease key holds ``"<token>:<owner>"``; ``token`` comes from ``INCR`` on the fence key at
the moment of acquiring, so every owner the account ever had has a larger token than the
one before. Acquiring, renewing and releasing are Lua scripts that compare the whole value,
so a process can only extend or drop a lease that is still its own. Every append the
service makes goes through :mod:`services.login.publisher`, whose script checks the same
value before it writes: an owner that stalled past its ttl cannot publish any more.

Locally the holder also keeps a deadline (the start of its last successful renewal plus
90 % of the ttl). Past it the process behaves as if it had lost the lease — it stops
talking to WeChat — even before Redis says so, because it can no longer be sure.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from services.login import metrics
from shared.keys import Keys
from shared.metrics import REDIS_UP

log = logging.getLogger(__name__)

ACQUIRE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
local value = token .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2])
return value
"""

RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Trust a renewal for this share of the ttl only: the server started its clock after we
# sent the command, and clocks on two machines drift.
LOCAL_VALIDITY = 0.9


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def token_of(value: str) -> int:
    return int(value.split(":", 1)[0])


class Lease:
    """The three lease scripts against one account's keys."""

    def __init__(self, client: redis.Redis, keys: Keys, owner: str, ttl_seconds: float) -> None:
        self.keys = keys
        self.owner = owner
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self._acquire = client.register_script(ACQUIRE_LUA)
        self._renew = client.register_script(RENEW_LUA)
        self._release = client.register_script(RELEASE_LUA)

    def acquire(self) -> str | None:
        """The new lease value (with a fresh fencing token), or None if someone holds it."""
        value = self._acquire(keys=[self.keys.login_lease, self.keys.login_fence],
                              args=[self.owner, self.ttl_ms])  # fmt: skip
        return str(value) if value else None

    def renew(self, value: str) -> bool:
        return bool(self._renew(keys=[self.keys.login_lease], args=[value, self.ttl_ms]))

    def release(self, value: str) -> bool:
        return bool(self._release(keys=[self.keys.login_lease], args=[value]))


@dataclass(frozen=True, slots=True)
class Held:
    value: str
    valid_until: float  # time.monotonic()

    @property
    def token(self) -> int:
        return token_of(self.value)


class LeaseState:
    """What this process believes about the lease; read by every thread, written by the keeper."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: Held | None = None

    def set(self, held: Held | None) -> None:
        with self._cond:
            self._held = held
            self._cond.notify_all()
        metrics.LEASE_HELD.set(1 if held else 0)

    def value(self) -> str | None:
        """The lease value while it is locally valid, else None."""
        with self._cond:
            held = self._held
        if held is None or time.monotonic() >= held.valid_until:
            return None
        return held.value

    @property
    def held(self) -> bool:
        return self.value() is not None

    def wait_valid(self, value: str, timeout: float) -> bool:
        """Wait (up to ``timeout``) until ``value`` is confirmed valid again; False if it is not."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                held = self._held
                now = time.monotonic()
                if held is None or held.value != value:
                    return False
                if now < held.valid_until:
                    return True
                if now >= deadline:
                    return False
                self._cond.wait(min(deadline - now, 0.05))


class LeaseKeeper(threading.Thread):
    """Acquires the lease when it is free, renews it while held, reports gains and losses."""

    def __init__(
        self,
        lease: Lease,
        state: LeaseState,
        *,
        ttl_seconds: float,
        renew_seconds: float,
        poll_seconds: float,
        on_acquired: Callable[[str], None],
        on_lost: Callable[[str, str], None],
    ) -> None:
        super().__init__(name="lease", daemon=True)
        self.lease = lease
        self.state = state
        self.ttl = ttl_seconds
        self.renew_every = renew_seconds
        self.poll_every = poll_seconds
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.redis_ok = False
        self._halt = threading.Event()
        self._value: str | None = None

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                if self._value is None:
                    self._try_acquire()
                else:
                    self._try_renew()
            except Exception:  # never let the keeper die: readiness depends on it
                log.exception("lease_keeper_error")
            self._halt.wait(self.poll_every if self._value is None else self.renew_every)

    def _try_acquire(self) -> None:
        started = time.monotonic()
        try:
            value = self.lease.acquire()
        except redis.RedisError as exc:
            self._redis(False, exc)
            return
        self._redis(True)
        if value is None:
            return
        self._value = value
        self.state.set(Held(value, started + self.ttl * LOCAL_VALIDITY))
        log.info("lease_acquired", extra={"token": token_of(value)})
        self.on_acquired(value)

    def _try_renew(self) -> None:
        value = self._value
        assert value is not None
        started = time.monotonic()
        try:
            renewed = self.lease.renew(value)
        except redis.RedisError as exc:
            self._redis(False, exc)
            if self.state.value() is None:
                self._lose(value, "redis_unreachable")
            return
        self._redis(True)
        if renewed:
            self.state.set(Held(value, started + self.ttl * LOCAL_VALIDITY))
        else:
            self._lose(value, "taken_over")

    def _lose(self, value: str, why: str) -> None:
        self._value = None
        self.state.set(None)
        log.warning("lease_lost", extra={"token": token_of(value), "why": why})
        self.on_lost(value, why)

    def _redis(self, ok: bool, exc: Exception | None = None) -> None:
        if ok != self.redis_ok:
            if ok:
                log.info("redis_reachable")
            else:
                log.warning("redis_unreachable", extra={"error": type(exc).__name__})
        self.redis_ok = ok
        REDIS_UP.set(1 if ok else 0)

    def release(self) -> None:
        """Give the lease up at shutdown so a standby takes over at once (call after stop)."""
        value, self._value = self._value, None
        self.state.set(None)
        if value is None:
            return
        try:
            released = self.lease.release(value)
        except redis.RedisError as exc:
            log.warning("lease_release_failed", extra={"error": type(exc).__name__})
            return
        log.info("lease_released", extra={"token": token_of(value), "released": released})
