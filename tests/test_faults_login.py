"""kill -9 of the login service that holds the WeChat session, with a standby running and
messages arriving around the kill: the standby takes the account over and every message is
stored and counted exactly once (the count read from the notifier's published events)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from typing import TYPE_CHECKING

import pytest
import redis
from fault_fixtures import Services, services
from procs import wait_for
from tcp_proxy import TcpProxy

from shared.keys import Keys
from shared.local_redis import LocalRedis

if TYPE_CHECKING:
    from login_fixtures import LoginRig

__all__ = ["services"]  # fixtures
pytest_plugins = ("login_fixtures",)


def published_count(client: redis.Redis, keys: Keys) -> int | None:
    for _, fields in client.xrevrange(keys.events, count=500) or []:
        if fields and fields.get("event") == "notification":
            return int(json.loads(fields["data"])["count"])
    return None


def stored_ids(rig: LoginRig) -> list[str]:
    return [json.loads(f["data"])["id"] for _, f in rig.entries(rig.keys.messages)]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_kill_9_of_the_login_owner_standby_takes_over_no_message_lost_or_counted_twice(
    rig: LoginRig, services: Services, redis_url: str, keys: Keys, rclient: redis.Redis
) -> None:
    """Messages before the kill, while the owner is frozen just before it dies, while the
    standby takes over, and after: all stored, the published count is exactly their number."""
    services.notifier(redis_url)
    owner = rig.start("owner")
    rig.log_in()
    standby = rig.start("standby")
    sent: list[str] = []

    def send(label: str, n: int) -> None:
        for i in range(n):
            kind = "group" if i % 3 == 0 else "friend"
            sent.append(rig.phone.message(kind=kind, type="text", text=f"{label} {i} ⚡"))

    send("before", 5)
    wait_for(lambda: published_count(rclient, keys) == 5, timeout=15, what="5 counted")
    assert owner.proc is not None
    os.kill(owner.proc.pid, signal.SIGSTOP)  # dying: it reads nothing more
    send("frozen", 10)
    before = rig.last_id()
    owner.kill()
    killed = time.monotonic()
    send("takeover", 10)
    _, resumed = rig.wait_login("logged_in", after=before, timeout=15)
    took = time.monotonic() - killed
    send("after", 5)

    total = len(sent)
    assert len(set(sent)) == total
    wait_for(lambda: published_count(rclient, keys) == total, timeout=20, what=f"{total}")
    assert sorted(stored_ids(rig)) == sorted(sent)
    assert int(rclient.get(keys.unread) or 0) == total
    assert resumed["via"] == "hot_reload"
    assert standby.metric("wxstream_login_lease_held") == 1.0
    print(
        f"\nlogin kill -9 with a standby: takeover in {took:.1f}s; {total} messages sent "
        f"before, during and after it: {len(stored_ids(rig))} stored, count {total}: "
        "0 lost, 0 counted twice"
    )


class MessageLost(Exception):
    """The known gap itself, so the strict xfail below cannot pass on any other failure."""


@pytest.mark.xfail(
    strict=True,
    raises=MessageLost,
    reason=(
        "services/login keeps nothing between fetching a message from WeChat (webwxsync) "
        "and its fenced XADD: if the owner dies (or loses its lease while Redis is "
        "unreachable) in between, the message is gone: the standby's hot reload does not "
        "fetch it again (the simulator, like WeChat once the SyncKey moved on, delivers a "
        "message once). Seen about 1 run in 10 with messages arriving at 20/s around a "
        "kill -9; made deterministic here by stalling the owner's Redis link."
    ),
)
@pytest.mark.timeout(60)
def test_message_fetched_but_not_yet_stored_when_the_owner_dies_is_not_lost(
    rig: LoginRig, redis_server: LocalRedis
) -> None:
    with TcpProxy(redis_server.port) as proxy:
        owner = rig.start("owner", WX_REDIS_URL=proxy.url, WX_REDIS_TIMEOUT_SECONDS="1")
        rig.log_in()
        rig.start("standby")
        proxy.stall()  # the owner still talks to WeChat, but cannot write to Redis
        msg_id = rig.phone.message(kind="friend", type="text", text="in flight ✈")
        wait_for(lambda: rig.phone.state()["pending_messages"] == 0, what="owner fetched it")
        before = rig.last_id()
        owner.kill()
        rig.wait_login("logged_in", after=before, timeout=15)
        rig.phone.message(kind="friend", type="text", text="after the takeover")
        with contextlib.suppress(TimeoutError):
            rig.wait_messages(2, timeout=8)
        if msg_id not in stored_ids(rig):
            raise MessageLost("the message the dead owner had fetched is lost")
