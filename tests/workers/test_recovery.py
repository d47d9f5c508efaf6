"""The recovery sweep: a turn whose task was lost is sent again, a live one never is.

The sweep runs in-process here over the ledger's scripts, on a clock the test moves; sending is
recorded instead of reaching a broker. ``tests/chaos/test_sentinel_failover.py`` is the same
sweep inside real workers, after a failover that loses tasks.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.workers.test_ledger import SID, entries, ingest, ledger, reply
from tokenwindow.constants import RECOVERY_KEY, turn_order_key
from tokenwindow.metrics import MetricsRecorder
from workers import ledger as ledger_module
from workers import recovery
from workers.ledger import MAX_RESENDS, RENEW_SCRIPT, Ledger, lua_source, renew_header, script_args
from workers.recovery import RecoverySweep

LEASE = 30


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The ledger's and the sweep's ``time.time``, moved by the test."""
    fake = Clock()
    monkeypatch.setattr(ledger_module, "time", fake)
    monkeypatch.setattr(recovery, "time", fake)
    return fake


class Sent(list[dict[str, Any]]):
    def __call__(self, kwargs: dict[str, Any]) -> None:
        self.append(kwargs)


def sweeper(client: redis.Redis, book: Ledger) -> tuple[RecoverySweep, Sent]:
    sent = Sent()
    return RecoverySweep(client, book, MetricsRecorder(client), sent), sent


def turn_ids(sent: Sent) -> list[str]:
    return [kwargs["turn_id"] for kwargs in sent]


def test_a_generating_turn_whose_task_was_lost_is_sent_again_until_given_up(
    client: redis.Redis, clock: Clock
) -> None:
    book = ledger(client, lease_seconds=LEASE)
    sweep, sent = sweeper(client, book)
    ingest(book, "t1", "hello")
    book.begin(SID, "t1", "killed-worker")
    clock.now += 2 * LEASE - 1  # the lease ran out, one grace period not yet
    assert sweep.sweep() == 0
    clock.now += 2
    assert sweep.sweep() == 1
    assert sent == [{"session_id": SID, "turn_id": "t1", "messages": [], "model": "m"}]
    assert sweep.sweep() == 0, "the resend is waited for"
    for _ in range(MAX_RESENDS - 1):
        clock.now += LEASE + 1
        assert sweep.sweep() == 1
    clock.now += LEASE + 1
    assert sweep.sweep() == 0
    assert turn_ids(sent) == ["t1"] * MAX_RESENDS
    assert client.zscore(RECOVERY_KEY, SID) is None, "given up: the stale eviction remains"
    assert int(client.hget("tw:metrics", "turns_resent") or 0) == MAX_RESENDS


def test_a_resent_turn_is_taken_over_and_finishes_once(client: redis.Redis, clock: Clock) -> None:
    book = ledger(client, lease_seconds=LEASE)
    sweep, sent = sweeper(client, book)
    ingest(book, "t1", "hello")
    book.begin(SID, "t1", "killed-worker")
    clock.now += 2 * LEASE + 1
    assert sweep.sweep() == 1
    assert turn_ids(sent) == ["t1"]
    # What the resent ingest_turn does: its ingest skips, its begin takes the expired lease.
    assert ingest(book, "t1", "hello").outcome == "skip"
    assert book.begin(SID, "t1", "resent").outcome == "generating"
    assert book.finish(SID, "t1", "resent", reply("t1", "hi"), {}).outcome == "completed"
    assert book.finish(SID, "t1", "killed-worker", reply("t1", "hi"), {}).outcome == "done"
    clock.now += LEASE + 1
    assert sweep.sweep() == 0
    assert client.zscore(RECOVERY_KEY, SID) is None, "nothing live: no longer watched"


def test_a_stream_that_renews_its_lease_is_never_sent_again(
    client: redis.Redis, clock: Clock
) -> None:
    from tokenwindow.scripts import SyncScript

    book = ledger(client, lease_seconds=LEASE)
    sweep, sent = sweeper(client, book)
    renew = SyncScript(client, lua_source(RENEW_SCRIPT))
    ingest(book, "t1", "a long reply")
    book.begin(SID, "t1", "streaming")
    for _ in range(30):  # five minutes of a stream renewing every third of its lease
        clock.now += LEASE / 3
        assert renew(*script_args(SID, book.limits, renew_header("t1", "streaming", book.limits)))
        sweep.sweep()
    assert sent == []


def test_a_retry_waiting_for_its_backoff_is_left_alone(client: redis.Redis, clock: Clock) -> None:
    book = ledger(client, lease_seconds=LEASE)
    sweep, sent = sweeper(client, book)
    ingest(book, "t1", "hello")
    book.begin(SID, "t1", "a")
    book.retry(SID, "t1", "a", count="retries", retry_at=clock.now + 300)  # a 429's Retry-After
    clock.now += 300 + LEASE - 1
    assert sweep.sweep() == 0
    clock.now += 2  # overdue by a grace period: the retry's task was lost
    assert sweep.sweep() == 1
    assert turn_ids(sent) == ["t1"]


def test_a_lost_hand_on_is_sent_again_after_the_stale_mark(
    client: redis.Redis, clock: Clock
) -> None:
    book = ledger(client, lease_seconds=LEASE, stale_seconds=600)
    sweep, sent = sweeper(client, book)
    ingest(book, "t1", "first")
    ingest(book, "t2", "second")
    book.begin(SID, "t1", "a")
    done = book.finish(SID, "t1", "a", reply("t1", "r1"), {})
    assert done.handoff is not None  # and then lost with the broker
    clock.now += 599  # a handed-on task may wait that long behind a backlog
    assert sweep.sweep() == 0
    clock.now += 2
    assert sweep.sweep() == 1
    assert turn_ids(sent) == ["t2"]
    assert ingest(book, "t2", "second").outcome == "ingested", "the resend moves it on"


def test_a_stalled_compression_is_sent_again(client: redis.Redis, clock: Clock) -> None:
    book = ledger(client, lease_seconds=LEASE, stale_seconds=600)
    sweep, sent = sweeper(client, book)
    ingest(book, "t1", "a long history")
    book.compress_first(SID, "t1")
    book.compress_queued(SID, "t1")
    clock.now += 601
    assert sweep.sweep() == 1
    assert turn_ids(sent) == ["t1"]
    again = ingest(book, "t1", "a long history")
    assert (again.state, again.data.get("compress_queued")) == ("compressing", None), (
        "the resent ingest sends the compression again"
    )


def test_many_sessions_are_swept_in_batches(client: redis.Redis, clock: Clock) -> None:
    book = ledger(client, lease_seconds=LEASE)
    sweep, sent = sweeper(client, book)
    sessions = [f"s{n}" for n in range(recovery.BATCH * 2 + 5)]
    for sid in sessions:
        batch = entries("t", "hello")
        book.ingest(
            sid, "t", batch, request={"session_id": sid}, model="m", strategy="h", encoding="e"
        )
        book.begin(sid, "t", "dead")
    clock.now += 2 * LEASE + 1
    assert sweep.sweep() == len(sessions)
    assert sorted(kwargs["session_id"] for kwargs in sent) == sorted(sessions)


def test_a_batch_of_idle_sessions_costs_a_few_round_trips_not_some_per_session(
    client: redis.Redis, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every session is looked at once after its last turn ends: at 100 finished turns a
    second that was three round trips each (look, remove, look again) beside the streams."""
    book = ledger(client, lease_seconds=LEASE)
    sweep, _ = sweeper(client, book)
    sessions = [f"s{n}" for n in range(recovery.BATCH * 2 + 50)]
    for sid in sessions:
        book.ingest(sid, "t", entries("t", "hi"), request={}, model="m", strategy="h", encoding="e")
        book.begin(sid, "t", "worker")
        book.finish(sid, "t", "worker", reply("t", "hello"), {})
    clock.now += LEASE + 1
    sends = 0
    send_packed_command = redis.connection.AbstractConnection.send_packed_command

    def counted(self: redis.connection.AbstractConnection, *args: Any, **kwargs: Any) -> None:
        nonlocal sends
        sends += 1
        send_packed_command(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    assert sweep.sweep() == 0
    monkeypatch.setattr(
        redis.connection.AbstractConnection, "send_packed_command", send_packed_command
    )
    assert client.zcard(RECOVERY_KEY) == 0, "nothing live: no session watched any more"
    batches = 3
    # Per batch the due list and two looks; then the empty list, and loading the script once.
    assert sends <= batches * 3 + 2


def test_a_turn_ingested_while_its_idle_session_is_unwatched_is_still_watched(
    client: redis.Redis, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep's first look finds the session idle; a new turn arrives before the sweep
    takes the session off the index. The second look, after the removal, sees it."""
    book = ledger(client, lease_seconds=LEASE)
    sweep, sent = sweeper(client, book)
    ingest(book, "t1", "hello")
    book.begin(SID, "t1", "worker")
    book.finish(SID, "t1", "worker", reply("t1", "hi"), {})
    clock.now += LEASE + 1
    first_looks = book.recover

    def look_then_arrive(session_ids: Any, **kwargs: Any) -> Any:
        looks = first_looks(session_ids, **kwargs)
        if not kwargs:  # between the first look and the removal
            ingest(book, "t2", "again")
        return looks

    monkeypatch.setattr(book, "recover", look_then_arrive)
    assert sweep.sweep() == 0
    assert client.zscore(RECOVERY_KEY, SID) == clock.now + LEASE, "due a grace after t2 arrived"
    monkeypatch.setattr(book, "recover", first_looks)
    clock.now += LEASE + 1
    assert sweep.sweep() == 1
    assert turn_ids(sent) == ["t2"], "the new turn's lost task is sent again"


def test_a_broken_session_is_logged_and_the_others_are_still_swept(
    client: redis.Redis, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    book = ledger(client, lease_seconds=LEASE)
    sweep, sent = sweeper(client, book)
    client.zadd(RECOVERY_KEY, {"broken": clock.now - 1})
    client.set(turn_order_key("broken"), "not a sorted set")  # the look fails with WRONGTYPE
    ingest(book, "t1", "hello")
    book.begin(SID, "t1", "dead")
    clock.now += 2 * LEASE + 1
    assert sweep.sweep() == 1
    assert turn_ids(sent) == ["t1"]
    failed = [r for r in caplog.records if r.getMessage().endswith("could not look at a session")]
    assert [r.fields["session_id"] for r in failed] == ["broken"]
    assert client.zscore(RECOVERY_KEY, "broken") == clock.now + LEASE, "looked at again later"
