"""The turn ledger's transitions and crash points, on fakeredis (Lua) and on the real Redis.

Each test drives the scripts directly, the way tasks do, and checks the state, the events and
the transcript after every step; a "crash" is simply a step that never runs, followed by the
redelivered task's steps.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from tokenwindow.constants import (
    METRICS_KEY,
    SESSIONS_INDEX_KEY,
    events_stream_key,
    transcript_key,
    turn_order_key,
    turns_key,
)
from tokenwindow.counting import counter_for_encoding
from tokenwindow.sessions import Entry
from workers.ledger import TRANSITIONS, BeginAhead, Ledger, Limits, TurnState

LIMITS = Limits(
    ttl_seconds=3600, maxlen=1000, lease_seconds=30, stale_seconds=600, lease_grace_seconds=60
)
SID = "ledger-session"


def ledger(client: redis.Redis, **limits: int) -> Ledger:
    return Ledger(client, Limits(**{**LIMITS.__dict__, **limits}))


def entries(turn_id: str, *texts: str, role: str = "user") -> list[Entry]:
    return [Entry({"role": role, "content": t}, 5, turn_id) for t in texts]  # type: ignore[typeddict-item]


def ingest(book: Ledger, turn_id: str, *texts: str, **extra: Any) -> Any:
    batch = extra.pop("batch", None) or entries(turn_id, *texts)
    return book.ingest(
        SID,
        turn_id,
        batch,
        request={"session_id": SID, "turn_id": turn_id, "messages": [], "model": "m"},
        model="m",
        strategy="hybrid",
        encoding=extra.pop("encoding", "o200k_base"),
        history=extra.pop("history", False),
        begin=extra.pop("begin", None),
    )


def answer(book: Ledger, turn_id: str, text: str) -> None:
    assert book.begin(SID, turn_id, "a").outcome == "generating"
    assert book.finish(SID, turn_id, "a", reply(turn_id, text), {}).outcome == "completed"


def window(client: redis.Redis) -> list[Any]:
    """What the next generation would send (the working window's verbatim part)."""
    from workers.session_store import SessionStore

    counter = counter_for_encoding("o200k_base")
    return [m["content"] for m in SessionStore(client).working_window(SID, counter).messages]


def events(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(f[b"event"]) for _, f in client.xrange(events_stream_key(SID))]


def transcript(client: redis.Redis) -> list[Any]:
    return [Entry.loads(r).message["content"] for r in client.lrange(transcript_key(SID), 0, -1)]


def reply(turn_id: str, text: str, **message: Any) -> Entry:
    return Entry({"role": "assistant", "content": text, **message}, 3, turn_id)  # type: ignore[typeddict-item]


def test_a_turn_walks_ingest_begin_finish(client: redis.Redis) -> None:
    book = ledger(client)
    out = ingest(book, "t1", "hello")
    assert (out.outcome, out.record["state"]) == ("ingested", TurnState.INGESTED)
    began = book.begin(SID, "t1", "owner-a")
    assert began.outcome == "generating"
    assert began.record["attempt"] == 1
    assert [e.message["content"] for e in began.entries] == ["hello"]
    done = book.finish(SID, "t1", "owner-a", reply("t1", "hi!"), {"chars": 3})
    assert done.outcome == "completed"
    assert transcript(client) == ["hello", "hi!"]
    kinds = [(e["type"], e["seq"]) for e in events(client)]
    assert kinds == [("turn_started", 1), ("turn_completed", 2)]
    assert client.zcard(turn_order_key(SID)) == 0, "the session is free"


def ahead(owner: str, below: int = 1_000) -> BeginAhead:
    return BeginAhead(owner, below=below, count="begun")


def begun(client: redis.Redis) -> int:
    return int(client.hget(METRICS_KEY, "begun") or 0)


def test_an_ingest_with_room_to_spare_begins_in_the_same_call(client: redis.Redis) -> None:
    book = ledger(client)
    began = ingest(book, "t1", "hello", "there", begin=ahead("owner-a", below=10))
    assert (began.outcome, began.record["state"]) == ("generating", TurnState.GENERATING)
    assert (began.record["owner"], began.record["attempt"]) == ("owner-a", 1)
    assert began.record["lease_until"] > time.time()
    assert [e.message["content"] for e in began.entries] == ["hello", "there"]
    assert (began.data["published"], began.data["encoding"]) == ("", "o200k_base")
    assert begun(client) == 1 and client.zscore(SESSIONS_INDEX_KEY, SID) is not None
    assert book.begin(SID, "t1", "owner-b").outcome == "busy", "the lease is held"
    done = book.finish(SID, "t1", "owner-a", reply("t1", "hi!"), {})
    assert done.outcome == "completed"
    assert [e["type"] for e in events(client)] == ["turn_started", "turn_completed"]


def test_an_ingest_only_begins_a_window_under_its_bound_in_its_encoding(
    client: redis.Redis,
) -> None:
    book = ledger(client)
    over = ingest(book, "t1", "hello", "there", begin=ahead("a", below=9))
    assert (over.outcome, over.data["window_tokens"]) == ("ingested", 10)
    assert "owner" not in over.record and begun(client) == 0
    answer(book, "t1", "hi")
    other = ingest(book, "t2", "more", begin=ahead("a"), encoding="cl100k_base")
    assert (other.outcome, other.data["encoding"]) == ("ingested", "o200k_base")
    assert begun(client) == 0, "counted by the caller after counting in the session's encoding"


def test_a_parked_or_redelivered_turn_does_not_begin_from_its_ingest(
    client: redis.Redis,
) -> None:
    book = ledger(client)
    assert ingest(book, "t1", "first", begin=ahead("a")).outcome == "generating"
    assert ingest(book, "t2", "second", begin=ahead("b")).outcome == "parked"
    again = ingest(book, "t1", "first", begin=ahead("c"))
    assert (again.outcome, again.state) == ("skip", TurnState.GENERATING)
    assert json.loads(client.hget(turns_key(SID), "t1") or "{}")["owner"] == "a"
    assert begun(client) == 1, "one turn began, once"
    done = book.finish(SID, "t1", "a", reply("t1", "r1"), {})
    assert done.handoff is not None and done.handoff["turn_id"] == "t2"
    assert ingest(book, "t2", "second", begin=ahead("b")).outcome == "generating"
    assert begun(client) == 2


def test_turns_of_one_session_queue_and_are_handed_on_in_order(client: redis.Redis) -> None:
    book = ledger(client)
    assert ingest(book, "t1", "first").outcome == "ingested"
    assert ingest(book, "t2", "second").outcome == "parked"
    assert ingest(book, "t3", "third").outcome == "parked"
    book.begin(SID, "t1", "a")
    done = book.finish(SID, "t1", "a", reply("t1", "r1"), {})
    assert done.handoff is not None and done.handoff["turn_id"] == "t2"
    assert ingest(book, "t3", "third").outcome == "parked", "t2 is now the head"
    assert ingest(book, "t2", "second").outcome == "ingested"
    assert transcript(client) == ["first", "r1", "second"]


def test_a_redelivered_ingest_appends_nothing_twice(client: redis.Redis) -> None:
    book = ledger(client)
    ingest(book, "t1", "hello")
    again = ingest(book, "t1", "hello")
    assert (again.outcome, again.state) == ("skip", TurnState.INGESTED)
    assert transcript(client) == ["hello"]


def test_resent_and_trimmed_histories_append_only_the_new_messages(client: redis.Redis) -> None:
    book = ledger(client)
    ingest(book, "t1", "u1")
    book.begin(SID, "t1", "a")
    book.finish(SID, "t1", "a", reply("t1", "a1"), {})
    history = [*entries("t2", "u1"), reply("t2", "a1"), *entries("t2", "u2")]
    assert ingest(book, "t2", batch=history).data["appended"] == 1
    book.begin(SID, "t2", "a")
    book.finish(SID, "t2", "a", reply("t2", "a2"), {})
    trimmed = [reply("t3", "a2"), *entries("t3", "u3")]
    assert ingest(book, "t3", batch=trimmed).data["appended"] == 1
    assert transcript(client) == ["u1", "a1", "u2", "a2", "u3"]


def test_a_tool_result_must_answer_a_stored_call(client: redis.Redis) -> None:
    book = ledger(client)
    ingest(book, "t1", "weather?")
    book.begin(SID, "t1", "a")
    call = {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
    book.finish(SID, "t1", "a", reply("t1", "", tool_calls=[call]), {})
    orphan = [Entry({"role": "tool", "tool_call_id": "call_9", "content": "sun"}, 4, "t2")]
    out = ingest(book, "t2", batch=orphan)
    assert (out.outcome, out.data["tool_call_id"]) == ("invalid", "call_9")
    assert len(transcript(client)) == 2, "nothing of the bad turn was stored"
    book.fail(SID, "t2", "", {"code": "invalid_input", "message": "orphan"})
    answer = [Entry({"role": "tool", "tool_call_id": "call_1", "content": "sun"}, 4, "t3")]
    assert ingest(book, "t3", batch=answer).outcome == "ingested"


def test_the_lease_admits_one_execution_until_it_expires(client: redis.Redis) -> None:
    book = ledger(client, lease_seconds=1)
    ingest(book, "t1", "hello")
    assert book.begin(SID, "t1", "a").outcome == "generating"
    busy = book.begin(SID, "t1", "b")
    assert busy.outcome == "busy" and busy.data["lease_until"] > 0
    assert book.finish(SID, "t1", "b", reply("t1", "x"), {}).outcome == "lost"
    time.sleep(1.1)  # the holder stops renewing: it was killed
    takeover = book.begin(SID, "t1", "b")
    assert (takeover.outcome, takeover.record["attempt"]) == ("generating", 2)
    assert book.finish(SID, "t1", "a", reply("t1", "x"), {}).outcome == "lost"
    assert book.finish(SID, "t1", "b", reply("t1", "x"), {}).outcome == "completed"
    assert transcript(client) == ["hello", "x"]


def test_retry_gives_the_lease_back_and_counts(client: redis.Redis) -> None:
    book = ledger(client)
    ingest(book, "t1", "hello")
    book.begin(SID, "t1", "a")
    moved = book.retry(SID, "t1", "a", count="retries")
    assert (moved.outcome, moved.record["state"], moved.record["retries"]) == (
        "advanced",
        TurnState.INGESTED,
        1,
    )
    assert book.begin(SID, "t1", "b").outcome == "generating", "no lease left behind"
    assert book.retry(SID, "t1", "a", count="retries").outcome == "lost"


def test_terminal_turns_stay_terminal_and_report_the_next_turn(client: redis.Redis) -> None:
    book = ledger(client)
    ingest(book, "t1", "hello")
    ingest(book, "t2", "next")
    book.fail(SID, "t1", "", {"code": "provider_auth", "message": "no"})
    # A crash before the hand-on was sent: the redelivered task asks again and gets it again.
    for step in (
        lambda: ingest(book, "t1", "hello"),
        lambda: book.begin(SID, "t1", "a"),
        lambda: book.fail(SID, "t1", "", {"code": "x", "message": "y"}),
        lambda: book.finish(SID, "t1", "a", reply("t1", "late"), {}),
    ):
        out = step()
        assert (out.outcome, out.state) == ("done", TurnState.FAILED)
        assert out.handoff is not None and out.handoff["turn_id"] == "t2"
    assert [e["type"] for e in events(client)] == ["turn_started", "turn_failed"]
    assert transcript(client) == ["hello"]


def test_a_stale_head_is_evicted_by_the_next_arrival(client: redis.Redis) -> None:
    book = ledger(client, stale_seconds=-1)
    ingest(book, "t1", "stuck")
    out = ingest(book, "t2", "moves on")
    assert out.outcome == "ingested"
    failed = [e for e in events(client) if e["type"] == "turn_failed"]
    assert [(e["turn_id"], e["code"]) for e in failed] == [("t1", "abandoned")]
    assert book.record(SID, "t1")["state"] == TurnState.FAILED


def test_only_the_table_s_transitions_happen(client: redis.Redis) -> None:
    book = ledger(client)
    assert book.compress_first(SID, "nobody").outcome == "skip"
    ingest(book, "t1", "hello")
    assert book.finish(SID, "t1", "a", reply("t1", "x"), {}).outcome == "skip"
    assert book.retry(SID, "t1", "a", count="retries").outcome == "skip"
    assert book.compress_first(SID, "t1").outcome == "advanced"
    assert book.compress_first(SID, "t1").outcome == "skip"
    assert book.begin(SID, "t1", "a").outcome == "generating"
    assert TurnState.COMPRESSING in TRANSITIONS["begin"].sources
    assert not (TRANSITIONS["fail"].sources & {TurnState.COMPLETED, TurnState.FAILED})


def test_a_second_delivery_of_an_ingest_knows_its_compression_is_queued(
    client: redis.Redis,
) -> None:
    book = ledger(client)
    ingest(book, "t1", "hello")
    assert book.compress_queued(SID, "t1").outcome == "skip", "not compressing yet"
    assert book.compress_first(SID, "t1").outcome == "advanced"
    again = ingest(book, "t1", "hello")
    assert (again.outcome, again.state, again.data.get("compress_queued")) == (
        "skip",
        TurnState.COMPRESSING,
        None,
    ), "a crash before the send: the redelivery must send the compression"
    assert book.compress_queued(SID, "t1").outcome == "advanced"
    again = ingest(book, "t1", "hello")
    assert (again.state, again.data.get("compress_queued")) == (TurnState.COMPRESSING, True)
    assert book.begin(SID, "t1", "a").outcome == "generating"


def test_every_key_a_turn_writes_expires_with_the_session(client: redis.Redis) -> None:
    book = ledger(client)
    ingest(book, "t1", "hello")
    answer(book, "t1", "hi")
    keys = client.keys("*")
    assert events_stream_key(SID).encode() in keys
    assert {key: client.ttl(key) for key in keys if not 0 < client.ttl(key) <= 3600} == {}


def test_a_long_stream_keeps_its_session_from_expiring(client: redis.Redis) -> None:
    """Flushes of streamed text set no expiry (``KEEP_EXPIRY``): lease renewals do."""
    from tokenwindow.eventlog import KIND_TOKEN, PUBLISH_LUA, publish_call
    from tokenwindow.scripts import SyncScript
    from workers.ledger import RENEW_SCRIPT, lua_source, renew_header, script_args
    from workers.publisher import KEEP_EXPIRY

    book = ledger(client, ttl_seconds=100)
    ingest(book, "t1", "hello")
    book.begin(SID, "t1", "a")
    client.expire(turns_key(SID), 5)  # as if the session's expiry had nearly run out
    keys, args = publish_call(1000, KEEP_EXPIRY, [(SID, "t1", [(KIND_TOKEN, '{"x":1}', "hi")])])
    SyncScript(client, PUBLISH_LUA)(keys, args)
    assert 0 < client.ttl(turns_key(SID)) <= 5, "a flush leaves the expiry alone"
    renew = SyncScript(client, lua_source(RENEW_SCRIPT))
    assert renew(*script_args(SID, book.limits, renew_header("t1", "a", book.limits))) == 1
    assert client.ttl(turns_key(SID)) > 90


def test_begin_returns_the_published_text_for_a_redelivery(client: redis.Redis) -> None:
    from tokenwindow.eventlog import KIND_TOKEN, PUBLISH_LUA, publish_call

    book = ledger(client, lease_seconds=0)
    ingest(book, "t1", "hello")
    book.begin(SID, "t1", "a")
    script = client.register_script(PUBLISH_LUA)
    batch = [(KIND_TOKEN, '{"type":"token","text":"Hel"}', "Hel")]
    batch.append((KIND_TOKEN, '{"type":"token","text":"lo"}', "lo"))
    keys, args = publish_call(1000, 3600, [(SID, "t1", batch)])
    script(keys=keys, args=args)
    again = book.begin(SID, "t1", "b")
    assert again.data["published"] == "Hello"
    assert [e["seq"] for e in events(client)] == [1, 2, 3]


def test_one_publish_call_carries_many_sessions_in_order(client: redis.Redis) -> None:
    """A flush's groups: each session gets its own seqs, stream and published text; a reset
    inside a group forgets the text before it."""
    from tokenwindow.constants import turns_key
    from tokenwindow.eventlog import KIND_RESET, KIND_TOKEN, PUBLISH_LUA, publish_call

    def token(text: str) -> tuple[str, str, str]:
        return (KIND_TOKEN, json.dumps({"type": "token", "text": text}), text)

    other = "ledger-other"
    reset = (KIND_RESET, '{"type":"turn_restarted"}', "")
    groups = [
        (SID, "t1", [token("Hel"), token("lo")]),
        (other, "t9", [token("old"), reset, token("new"), token("er")]),
    ]
    keys, args = publish_call(1000, 3600, groups)
    out = client.register_script(PUBLISH_LUA)(keys=keys, args=args)
    assert [int(seq) for seq in out[::2]] == [1, 2, 1, 2, 3, 4]
    assert [e["text"] for e in events(client)] == ["Hel", "lo"]
    assert client.hget(turns_key(SID), "t1:text") == b"Hello"
    assert client.hget(turns_key(other), "t9:text") == b"newer"
    replayed = [json.loads(f[b"event"]) for _, f in client.xrange(events_stream_key(other))]
    assert [(e["type"], e["seq"]) for e in replayed] == [
        ("token", 1),
        ("turn_restarted", 2),
        ("token", 3),
        ("token", 4),
    ]
    for key in (turns_key(other), events_stream_key(other), events_stream_key(SID)):
        assert 0 < client.ttl(key) <= 3600, key


def test_a_regenerated_reply_replaces_the_last_one_in_the_window(client: redis.Redis) -> None:
    book = ledger(client)
    ingest(book, "t1", "u1", history=True)
    answer(book, "t1", "a1")
    ingest(book, "t2", batch=[*entries("t2", "u1"), reply("t2", "a1"), *entries("t2", "u2")])
    answer(book, "t2", "a2 (disliked)")
    regenerate = [*entries("t3", "u1"), reply("t3", "a1"), *entries("t3", "u2")]
    out = ingest(book, "t3", batch=regenerate, history=True)
    assert (out.outcome, out.data["appended"], out.data["abandoned"]) == ("ingested", 0, 1)
    answer(book, "t3", "a2 (again)")
    assert window(client) == ["u1", "a1", "u2", "a2 (again)"]
    assert transcript(client) == ["u1", "a1", "u2", "a2 (disliked)", "a2 (again)"]


def test_an_edited_message_starts_a_branch_and_the_old_one_stays_recorded(
    client: redis.Redis,
) -> None:
    book = ledger(client)
    ingest(book, "t1", "u1", history=True)
    answer(book, "t1", "a1")
    ingest(book, "t2", batch=[*entries("t2", "u1"), reply("t2", "a1"), *entries("t2", "u2")])
    answer(book, "t2", "a2")
    edit = [*entries("t3", "u1"), reply("t3", "a1"), *entries("t3", "u2 (edited)")]
    out = ingest(book, "t3", batch=edit, history=True)
    assert (out.data["appended"], out.data["abandoned"]) == (1, 2)
    answer(book, "t3", "a2 (for the edit)")
    assert window(client) == ["u1", "a1", "u2 (edited)", "a2 (for the edit)"]
    assert transcript(client) == ["u1", "a1", "u2", "a2", "u2 (edited)", "a2 (for the edit)"]


def test_only_a_history_turn_abandons_messages(client: redis.Redis) -> None:
    book = ledger(client)
    ingest(book, "t1", "u1")
    answer(book, "t1", "a1")
    out = ingest(book, "t2", batch=[*entries("t2", "u1"), *entries("t2", "other")])
    assert (out.data["appended"], out.data["abandoned"]) == (2, 0)
