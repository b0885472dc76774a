"""One owner per account: the fenced lease (unit, against the real Redis) and takeover
between real login processes."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import httpx
import pytest
import redis
from procs import wait_for

from services.login.lease import LOCAL_VALIDITY, Held, Lease, LeaseKeeper, LeaseState, token_of
from services.login.publisher import Fenced, Publisher
from shared.events import LoggedOut
from shared.keys import Keys
from shared.messages import EVENT_TEXT_MAX, ChatMessage

pytest_plugins = ("login_fixtures",)

if TYPE_CHECKING:
    from login_fixtures import LoginRig

WAIT = 15.0


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


def _holder(
    client: redis.Redis, keys: Keys, owner: str, ttl: float = 5.0
) -> tuple[Lease, LeaseState]:
    return Lease(client, keys, owner, ttl), LeaseState()


def _publisher(client: redis.Redis, keys: Keys, state: LeaseState) -> Publisher:
    return Publisher(client, keys, state, events_maxlen=1000, messages_maxlen=1000)


def _entries(client: redis.Redis, stream: str) -> list[tuple[str, dict[str, str]]]:
    found: list[tuple[str, dict[str, str]]] = client.xrange(stream)  # type: ignore[assignment]
    return found


def _message(n: int) -> ChatMessage:
    return ChatMessage(
        id=str(n), chat="friend", chat_id="@a", chat_name="张三", type="text", text="hi",
        created_at=1,
    )  # fmt: skip


def test_lease_is_exclusive_and_tokens_increase(client: redis.Redis, keys: Keys) -> None:
    a, _ = _holder(client, keys, "a")
    b, _ = _holder(client, keys, "b")
    first = a.acquire()
    assert first is not None
    assert first.endswith(":a")
    assert b.acquire() is None
    # A failed acquisition does not burn a fencing token.
    assert client.get(keys.login_fence) == str(token_of(first))
    assert not b.renew(first.replace(":a", ":b"))
    assert not b.release(first.replace(":a", ":b"))
    assert a.renew(first)
    assert a.release(first)
    second = b.acquire()
    assert second is not None
    assert token_of(second) == token_of(first) + 1


def test_stalled_owner_publish_is_refused_by_the_fence(client: redis.Redis, keys: Keys) -> None:
    lease_a, state_a = _holder(client, keys, "a", ttl=0.3)
    lease_b, state_b = _holder(client, keys, "b")
    value_a = lease_a.acquire()
    assert value_a is not None
    # A believes it still holds the lease (its local deadline is far away: it stalled).
    state_a.set(Held(value_a, time.monotonic() + 60))
    pub_a = _publisher(client, keys, state_a)
    pub_a.message(_message(1))

    wait_for(lambda: client.get(keys.login_lease) is None, timeout=5, what="lease expiry")
    value_b = lease_b.acquire()
    assert value_b is not None
    assert token_of(value_b) > token_of(value_a)
    state_b.set(Held(value_b, time.monotonic() + 60))

    with pytest.raises(Fenced):
        pub_a.message(_message(2))
    with pytest.raises(Fenced):
        pub_a.login_event(LoggedOut(reason="errors"))
    assert not lease_a.renew(value_a)
    assert not lease_a.release(value_a)

    _publisher(client, keys, state_b).message(_message(3))
    stored = [f["data"] for _, f in _entries(client, keys.messages)]
    assert [ChatMessage.model_validate_json(d).id for d in stored] == ["1", "3"]
    # Messages and their live events are written together or not at all.
    events = [f for _, f in _entries(client, keys.events) if f["event"] == "message"]
    assert [ChatMessage.model_validate_json(f["data"]).id for f in events] == ["1", "3"]


def test_publisher_refuses_locally_once_the_lease_deadline_passed(
    client: redis.Redis, keys: Keys
) -> None:
    lease, state = _holder(client, keys, "a")
    value = lease.acquire()
    assert value is not None
    state.set(Held(value, time.monotonic() - 0.01))
    with pytest.raises(Fenced):
        _publisher(client, keys, state).message(_message(1))
    assert client.xlen(keys.messages) == 0
    assert 0 < LOCAL_VALIDITY < 1


def test_only_one_of_two_processes_drives_the_account_and_the_other_takes_over(
    rig: LoginRig,
) -> None:
    owner = rig.start("owner")
    rig.log_in()
    standby = rig.start("standby")
    assert standby.metric("wxstream_login_lease_held") == 0.0
    assert owner.metric("wxstream_login_lease_held") == 1.0
    assert httpx.get(f"{standby.ops_url}/readyz").status_code == 200
    assert "login_attempt_started" not in standby.log_text()

    before = rig.last_id()
    owner.kill()
    killed = time.monotonic()
    _, resumed = rig.wait_login("logged_in", after=before, timeout=10)
    took = time.monotonic() - killed
    assert resumed["via"] == "hot_reload"
    assert took < 5.0, f"takeover took {took:.1f}s"
    assert standby.metric("wxstream_login_lease_held") == 1.0
    # Messages flow through the new owner.
    rig.phone.message(kind="friend", type="text", text="接管了 ✅")
    (_, msg), *_ = rig.wait_messages(1)
    assert msg["text"] == "接管了 ✅"
    assert rig.phone.state()["requests"]["jslogin"] == 1


def test_stalled_owner_that_wakes_up_after_takeover_publishes_nothing(rig: LoginRig) -> None:
    owner = rig.start("owner")
    rig.log_in()
    standby = rig.start("standby")
    assert owner.proc is not None
    before = rig.last_id()
    os.kill(owner.proc.pid, signal.SIGSTOP)
    try:
        rig.wait_login("logged_in", after=before, timeout=10)
    finally:
        os.kill(owner.proc.pid, signal.SIGCONT)
    wait_for(lambda: "lease_lost" in owner.log_text(), timeout=WAIT, what="owner notices")
    assert owner.alive
    assert owner.metric("wxstream_login_lease_held") == 0.0
    assert owner.metric("wxstream_login_logged_in") == 0.0

    rig.phone.message(kind="friend", type="text", text="只要一份 1️⃣")
    rig.wait_messages(1)
    # The woken owner neither fetches nor publishes: there is no second copy.
    with pytest.raises(TimeoutError):
        rig.wait_messages(2, timeout=1.5)
    assert standby.metric("wxstream_login_lease_held") == 1.0


class _FlakyLease:
    """A lease whose Redis can be switched off."""

    def __init__(self) -> None:
        self.down = False
        self.acquired = 0

    def acquire(self) -> str | None:
        if self.down:
            raise redis.ConnectionError("down")
        self.acquired += 1
        return f"{self.acquired}:me"

    def renew(self, value: str) -> bool:
        if self.down:
            raise redis.ConnectionError("down")
        return True

    def release(self, value: str) -> bool:
        return True


def test_keeper_gives_the_lease_up_locally_when_redis_stays_unreachable() -> None:
    fake = _FlakyLease()
    state = LeaseState()
    gained: list[str] = []
    lost: list[str] = []
    keeper = LeaseKeeper(
        cast(Lease, fake),
        state,
        ttl_seconds=0.6,
        renew_seconds=0.1,
        poll_seconds=0.05,
        on_acquired=gained.append,
        on_lost=lambda value, why: lost.append(why),
    )
    keeper.start()
    try:
        wait_for(lambda: gained == ["1:me"] and state.held, timeout=5)
        fake.down = True
        started = time.monotonic()
        wait_for(lambda: lost == ["redis_unreachable"], timeout=5)
        # Not before the local deadline (90 % of the ttl after the last renewal).
        assert time.monotonic() - started >= 0.3
        assert state.value() is None
        assert not keeper.redis_ok
        fake.down = False
        wait_for(lambda: gained == ["1:me", "2:me"] and state.held, timeout=5)
    finally:
        keeper.stop()
        keeper.join(2)


def _publishing(client: redis.Redis, keys: Keys) -> Publisher:
    """A publisher whose process holds the lease."""
    lease, state = _holder(client, keys, "a")
    value = lease.acquire()
    assert value is not None
    state.set(Held(value, time.monotonic() + 60))
    return _publisher(client, keys, state)


def test_a_message_stored_twice_is_written_once(client: redis.Redis, keys: Keys) -> None:
    """A retried store (its first reply lost to a timeout) or a redelivery by WeChat: the
    second store writes nothing, so the notifier never sees it straddle a mark-read."""
    publisher = _publishing(client, keys)
    assert len(publisher.message(_message(7))) == 2
    assert publisher.message(_message(7)) == []
    assert len(publisher.message(_message(8))) == 2
    stored = [
        ChatMessage.model_validate_json(f["data"]).id for _, f in _entries(client, keys.messages)
    ]
    assert stored == ["7", "8"]
    events = [f for _, f in _entries(client, keys.events) if f["event"] == "message"]
    assert len(events) == 2


def test_a_huge_message_is_stored_whole_and_its_event_carries_a_cut_text(
    client: redis.Redis, keys: Keys
) -> None:
    """2 MB of text: the messages stream (and so GET /api/messages) keeps all of it; the
    ``message`` event that every open dashboard receives carries the first characters."""
    publisher = _publishing(client, keys)
    text = "长消息 🐱 " * 300_000
    huge = _message(9).model_copy(update={"text": text})
    assert len(publisher.message(huge)) == 2
    assert len(publisher.message(_message(10))) == 2
    stored = [
        ChatMessage.model_validate_json(f["data"]) for _, f in _entries(client, keys.messages)
    ]
    assert [m.text for m in stored] == [text, "hi"]
    assert not any(m.truncated for m in stored)
    events = [
        ChatMessage.model_validate_json(f["data"])
        for _, f in _entries(client, keys.events)
        if f["event"] == "message"
    ]
    assert (events[0].text, events[0].truncated) == (text[:EVENT_TEXT_MAX], True)
    assert (events[1].text, events[1].truncated) == ("hi", False)
    assert events[0].model_copy(update={"text": text, "truncated": False}) == stored[0]
