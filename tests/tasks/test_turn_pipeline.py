"""The turn pipeline end to end: client -> real worker -> fake provider over HTTP -> events."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
import redis

from tests.fakes.behaviour import Fault
from tests.tasks.conftest import BIG_MODEL, CLAUDE_MODEL, TINY_MODEL, TINY_WINDOW, Pipeline
from tokenwindow.client import TokenManagementClient
from tokenwindow.constants import TASK_INGEST_TURN
from tokenwindow.errors import InvalidInputError, TurnFailedError, UnknownModelError
from tokenwindow.events import EventType

pytestmark = pytest.mark.slow


def session() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _events(client: TokenManagementClient, sid: str) -> list[dict[str, Any]]:
    raw = await client.redis.xrange(f"tw:{{{sid}}}:events")
    return [json.loads(fields["event"]) | {"id": entry} for entry, fields in raw]


def test_streamed_reply_arrives_in_order_and_lands_in_the_transcript(
    pipeline: Pipeline, redis_client: redis.Redis
) -> None:
    sid = session()

    async def scenario() -> tuple[list[str], list[Any], list[dict[str, Any]]]:
        async with TokenManagementClient() as client:
            chunks = [
                c
                async for c in await client.create_completion(
                    session_id=sid,
                    messages=[user("hello there, how are you")],
                    model=BIG_MODEL,
                    stream=True,
                )
            ]
            return chunks, await client.get_transcript(sid), await _events(client, sid)

    chunks, transcript, events = run(scenario())
    assert "".join(chunks) == "Fake reply to 1 messages. You said: hello there, how are you"
    assert len(chunks) > 1, "the reply should stream in several deltas"
    assert transcript == [
        user("hello there, how are you"),
        {"role": "assistant", "content": "".join(chunks)},
    ]
    kinds = [e["type"] for e in events]
    assert kinds[0] == EventType.TURN_QUEUED and kinds[-1] == EventType.TURN_COMPLETED
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_small_window_survives_a_long_conversation(pipeline: Pipeline) -> None:
    """Every request fits the 2,000-token window; compression happens; nothing is lost."""
    pipeline.provider.reset()
    pipeline.provider.configure(context_limit=TINY_WINDOW)
    sid = session()
    turns = 40
    text = "We discussed the launch plan for {n}: Maria owns budget item {n} worth {n}00 euros. "

    async def scenario() -> tuple[list[str], list[Any], list[dict[str, Any]]]:
        replies = []
        async with TokenManagementClient() as client:
            for n in range(turns):
                answer = await client.create_completion(
                    session_id=sid, messages=[user(text.format(n=n) * 6)], model=TINY_MODEL
                )
                replies.append(answer["content"])
            return replies, await client.get_transcript(sid), await _events(client, sid)

    try:
        replies, transcript, events = run(scenario())
    finally:
        pipeline.provider.configure(unlimited=True)
    assert len(transcript) == 2 * turns, "the raw transcript keeps every message"
    assert [m["content"] for m in transcript[1::2]] == replies
    assert all(r.startswith("Fake reply to") for r in replies)
    assert pipeline.provider.max_prompt_tokens <= TINY_WINDOW
    completed = [e for e in events if e["type"] == EventType.COMPRESSION_COMPLETED]
    assert completed, "a 2,000-token window must have needed compression"
    assert all(e["tokens_after"] < e["tokens_before"] for e in completed)
    assert not [e for e in events if e["type"] == EventType.TURN_FAILED]


def test_late_subscriber_replays_every_token_exactly_once(pipeline: Pipeline) -> None:
    sid = session()

    async def scenario() -> tuple[str, list[dict[str, Any]]]:
        async with TokenManagementClient() as client:
            answer = await client.create_completion(
                session_id=sid, messages=[user("one two three four five six")], model=BIG_MODEL
            )
            replayed = [
                e
                async for e in client.subscribe(
                    sid, from_id="0", turn_id=answer["turn_id"], timeout=10
                )
            ]
            return answer["content"], replayed

    reply, replayed = run(scenario())
    tokens = [e for e in replayed if e["type"] == EventType.TOKEN]
    assert "".join(e["text"] for e in tokens) == reply
    assert len({e["seq"] for e in tokens}) == len(tokens)


def test_reconnecting_subscriber_continues_where_it_broke(pipeline: Pipeline) -> None:
    pipeline.provider.reset()
    pipeline.provider.configure(token_delay=0.02)
    sid = session()

    async def scenario() -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
        async with TokenManagementClient() as client:
            start = await client.last_event_id(sid)
            turn_id = await client.submit_turn(sid, [user(" ".join(["word"] * 30))], BIG_MODEL)
            first: list[dict[str, Any]] = []
            async for event in client.subscribe(sid, from_id=start, turn_id=turn_id, timeout=20):
                first.append(event)
                if sum(e["type"] == EventType.TOKEN for e in first) == 3:
                    break  # the connection "drops" here
            rest = [
                e
                async for e in client.subscribe(
                    sid, from_id=first[-1]["id"], turn_id=turn_id, timeout=20
                )
            ]
            transcript = await client.get_transcript(sid)
            return transcript[-1]["content"], first, rest

    try:
        reply, first, rest = run(scenario())
    finally:
        pipeline.provider.configure(token_delay=0.0)
    text = "".join(e["text"] for e in first + rest if e["type"] == EventType.TOKEN)
    assert text == reply
    assert not {e["id"] for e in first} & {e["id"] for e in rest}


def test_concurrent_turns_of_one_session_never_interleave(pipeline: Pipeline) -> None:
    sid = session()
    count = 50

    async def scenario() -> list[Any]:
        async with TokenManagementClient() as client:
            ids = await asyncio.gather(
                *(
                    client.submit_turn(sid, [user(f"question number {n}")], BIG_MODEL)
                    for n in range(count)
                )
            )
            for turn_id in ids:
                event = await client.wait_for_turn(sid, turn_id, timeout=120)
                assert event["type"] == EventType.TURN_COMPLETED
            return await client.get_transcript(sid)

    transcript = run(scenario())
    assert len(transcript) == 2 * count
    asked = [m["content"] for m in transcript[0::2]]
    assert sorted(asked) == sorted(f"question number {n}" for n in range(count))
    for question, answer in zip(transcript[0::2], transcript[1::2], strict=True):
        assert question["role"] == "user" and answer["role"] == "assistant"
        assert answer["content"].endswith(question["content"]), "reply follows its own question"


def test_resent_history_appends_only_the_new_suffix(pipeline: Pipeline) -> None:
    sid = session()

    async def scenario() -> list[Any]:
        async with TokenManagementClient() as client:
            history = [{"role": "system", "content": "be brief"}, user("first question")]
            first = await client.create_completion(
                session_id=sid, messages=history, model=BIG_MODEL
            )
            history += [{"role": "assistant", "content": first["content"]}, user("second question")]
            await client.create_completion(session_id=sid, messages=history, model=BIG_MODEL)
            return await client.get_transcript(sid)

    transcript = run(scenario())
    assert [m["role"] for m in transcript] == ["system", "user", "assistant", "user", "assistant"]


def test_anthropic_model_streams_through_the_same_flow(pipeline: Pipeline) -> None:
    sid = session()

    async def scenario() -> str:
        async with TokenManagementClient() as client:
            chunks = [
                c
                async for c in await client.create_completion(
                    session_id=sid, messages=[user("hi claude")], model=CLAUDE_MODEL, stream=True
                )
            ]
            return "".join(chunks)

    assert run(scenario()).endswith("You said: hi claude")


def test_rate_limit_is_retried_and_the_turn_completes(pipeline: Pipeline) -> None:
    pipeline.provider.reset()
    pipeline.provider.inject(Fault.error(429, retry_after=0.1), Fault.error(500))
    sid = session()

    async def scenario() -> dict[str, Any]:
        async with TokenManagementClient() as client:
            return await client.create_completion(
                session_id=sid, messages=[user("retry me")], model=BIG_MODEL
            )

    assert run(scenario())["content"].endswith("You said: retry me")
    assert len(pipeline.provider.requests) == 3


def test_auth_error_fails_fast_and_the_session_stays_usable(pipeline: Pipeline) -> None:
    pipeline.provider.reset()
    pipeline.provider.inject(Fault.error(401))
    sid = session()

    async def scenario() -> tuple[TurnFailedError, dict[str, Any]]:
        async with TokenManagementClient() as client:
            with pytest.raises(TurnFailedError) as failure:
                await client.create_completion(
                    session_id=sid, messages=[user("secret")], model=BIG_MODEL
                )
            after = await client.create_completion(
                session_id=sid, messages=[user("again")], model=BIG_MODEL
            )
            return failure.value, after

    error, after = run(scenario())
    assert error.code == "provider_auth"
    assert len(pipeline.provider.requests) == 2, "an auth error is not retried"
    assert after["content"].endswith("You said: again")


def test_bad_input_is_rejected_with_the_field_named(pipeline: Pipeline) -> None:
    async def scenario() -> None:
        async with TokenManagementClient() as client:
            with pytest.raises(InvalidInputError, match=r"messages\[0\]\.role"):
                await client.submit_turn(session(), [{"role": "robot", "content": "x"}], BIG_MODEL)
            with pytest.raises(InvalidInputError, match="session_id"):
                await client.submit_turn("bad*id", [user("x")], BIG_MODEL)
            with pytest.raises(UnknownModelError, match="gpt-4o"):
                await client.submit_turn(session(), [user("x")], "gpt-4oo")

    run(scenario())


def test_malformed_task_from_another_producer_fails_that_turn_only(pipeline: Pipeline) -> None:
    """A producer that skips validation gets a turn_failed event naming the field."""
    sid = session()

    async def scenario() -> dict[str, Any]:
        async with TokenManagementClient() as client:
            client._producer.send(
                TASK_INGEST_TURN,
                {
                    "session_id": sid,
                    "turn_id": "bad-turn",
                    "model": BIG_MODEL,
                    "messages": [{"role": "user"}],
                },
            )
            return await client.wait_for_turn(sid, "bad-turn", timeout=30)

    event = run(scenario())
    assert event["type"] == EventType.TURN_FAILED
    assert event["code"] == "invalid_input"
    assert "messages[0].content" in event["message"]


def test_sessions_can_be_listed_inspected_and_deleted(pipeline: Pipeline) -> None:
    """Reply text lives only in the session's keys: no task result holds it, and deleting the
    session deletes every key it had."""
    sid = session()

    async def scenario() -> None:
        async with TokenManagementClient() as client:
            answer = await client.create_completion(
                session_id=sid, messages=[user("keep me")], model=BIG_MODEL
            )
            results = [k async for k in client.redis.scan_iter(match="celery-task-meta-*")]
            for key in results:
                assert answer["content"] not in (await client.redis.get(key) or "")
            listed = {s["session_id"]: s for s in await client.list_sessions()}
            assert listed[sid]["messages"] == 2
            shown = await client.get_session(sid)
            assert shown is not None and shown["model"] == BIG_MODEL
            assert shown["total_tokens"] > 0
            assert await client.delete_session(sid) is True
            assert [k async for k in client.redis.scan_iter(match=f"tw:{{{sid}}}:*")] == []
            assert await client.get_session(sid) is None
            assert await client.get_transcript(sid) == []
            assert sid not in {s["session_id"] for s in await client.list_sessions()}
            assert await client.delete_session(sid) is False

    run(scenario())


def test_shared_metrics_move_as_turns_are_served(pipeline: Pipeline) -> None:
    pipeline.provider.reset()

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with TokenManagementClient() as client:
            before = await client.metrics()
            await client.create_completion(
                session_id=session(), messages=[user("ok")], model=BIG_MODEL
            )
            pipeline.provider.inject(Fault.error(401))
            with pytest.raises(TurnFailedError):
                await client.create_completion(
                    session_id=session(), messages=[user("no")], model=BIG_MODEL
                )
            return before, await client.metrics()

    before, after = run(scenario())

    def moved(name: str, label: str = "total") -> int:
        return int(after[name].get(label, 0)) - int(before[name].get(label, 0))

    assert moved("turns_submitted") == 2
    assert moved("turns_completed") == 1 and moved("turns_failed") == 1
    assert moved("provider_calls", "openai") == 2
    assert moved("errors", "provider_auth") == 1
    assert after["active_sessions"] >= 2
    assert (
        after["first_token_latency_seconds"]["count"]
        > before["first_token_latency_seconds"]["count"]
    )


def test_gemini_model_streams_through_the_same_flow(pipeline: Pipeline) -> None:
    from tests.stack import GEMINI_MODEL

    pipeline.provider.reset()
    sid = session()

    async def scenario() -> tuple[list[str], list[dict[str, Any]]]:
        async with TokenManagementClient() as client:
            chunks = [
                c
                async for c in await client.create_completion(
                    session_id=sid, messages=[user("hi gemini")], model=GEMINI_MODEL, stream=True
                )
            ]
            return chunks, await _events(client, sid)

    chunks, events = run(scenario())
    assert "".join(chunks).endswith("You said: hi gemini")
    assert len(chunks) > 1, "the reply should stream in several deltas"
    [request] = pipeline.provider.requests
    assert request.api == "gemini" and request.stream
    assert request.path == "/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse"
    done = events[-1]
    assert done["type"] == EventType.TURN_COMPLETED
    assert done["finish_reason"] == "stop"
    assert done["prompt_tokens"] == request.prompt_tokens and done["completion_tokens"] > 0
