"""Hostile and malformed turns, through the real pipeline: each fails alone and clearly.

Raw tasks are sent by name, as a producer in another language would, so the worker's own
validation is what answers; the client API is checked to refuse the same input before it is
sent. Every case runs beside a good turn on another session, which must complete, and a session
that already holds a good turn must keep it untouched. (A pickled task body is refused by the
worker itself: see ``tests/workers/test_pickle_refused.py``.)
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis
from kombu import Connection

from tests.conftest import TEST_REDIS_URL
from tests.tasks.conftest import BIG_MODEL, Pipeline
from tokenwindow.client import TokenManagementClient
from tokenwindow.constants import TASK_INGEST_TURN, TASK_ROUTES
from tokenwindow.errors import InvalidInputError, TokenWindowError, UnknownModelError
from tokenwindow.events import EventType
from tokenwindow.messages import MAX_MESSAGE_CHARS
from tokenwindow.producer import TaskProducer
from tokenwindow.protocol import MAX_MESSAGES_PER_TURN

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

TURN_QUEUE = TASK_ROUTES[TASK_INGEST_TURN]

WAIT = 30.0


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def session() -> str:
    return f"bad-{uuid.uuid4().hex[:10]}"


BAD_TURNS: dict[str, tuple[dict[str, Any], str, str]] = {
    # name: (fields replacing a good turn's, expected code, text the message must contain)
    "messages not a list": ({"messages": "hello"}, "invalid_input", "messages"),
    "message not an object": ({"messages": ["hello"]}, "invalid_input", "messages[0]"),
    "empty messages": ({"messages": []}, "invalid_input", "messages"),
    "unknown role": (
        {"messages": [{"role": "robot", "content": "x"}]},
        "invalid_input",
        "messages[0].role",
    ),
    "missing role": ({"messages": [{"content": "x"}]}, "invalid_input", "messages[0].role"),
    "missing content": ({"messages": [{"role": "user"}]}, "invalid_input", "messages[0].content"),
    "number as content": (
        {"messages": [{"role": "user", "content": 42}]},
        "invalid_input",
        "messages[0].content",
    ),
    "object as content": (
        {"messages": [{"role": "user", "content": {"text": "x"}}]},
        "invalid_input",
        "messages[0].content",
    ),
    "unknown message field": (
        {"messages": [{"role": "user", "content": "x", "colour": "red"}]},
        "invalid_input",
        "messages[0].colour",
    ),
    "lone surrogate": (
        {"messages": [user("broken \ud800 text")]},
        "invalid_input",
        "lone surrogate",
    ),
    "tool result without its call": (
        {"messages": [{"role": "tool", "tool_call_id": "call_404", "content": "42"}]},
        "invalid_input",
        "messages[0].tool_call_id",
    ),
    "tool calls on a user message": (
        {
            "messages": [
                {
                    "role": "user",
                    "content": "x",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f"}}],
                }
            ]
        },
        "invalid_input",
        "tool_calls",
    ),
    "unknown model": ({"model": "gpt-4oo"}, "unknown_model", "gpt-4o"),
    "model not a string": ({"model": 7}, "invalid_input", "model"),
    "negative max_tokens": ({"max_tokens": -5}, "invalid_input", "max_tokens"),
    "absurd max_tokens": ({"max_tokens": 10**12}, "invalid_input", "max_tokens"),
    "max_tokens as text": ({"max_tokens": "many"}, "invalid_input", "max_tokens"),
    "negative temperature": ({"temperature": -1}, "invalid_input", "temperature"),
    "absurd temperature": ({"temperature": 1e308}, "invalid_input", "temperature"),
    "unknown strategy": ({"strategy": "magic"}, "invalid_input", "strategy"),
    "unknown task field": ({"priority": "high"}, "invalid_input", "priority"),
    "message over the size limit": (
        {"messages": [user("x" * (MAX_MESSAGE_CHARS + 1))]},
        "invalid_input",
        f"{MAX_MESSAGE_CHARS:,}",
    ),
}

BAD_SESSION_IDS = ["a*b", "a?b", "a[b]", "tw:session:x", "a\nb", "", "x" * 129, "naïve"]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def good_turn(sid: str, turn_id: str) -> dict[str, Any]:
    return {"session_id": sid, "turn_id": turn_id, "model": BIG_MODEL, "messages": [user("hi")]}


async def bystander(client: TokenManagementClient) -> dict[str, Any]:
    """A good turn on another session, run while the bad one is processed."""
    return await client.create_completion(
        session_id=session(), messages=[user("still here")], model=BIG_MODEL, timeout=WAIT
    )


@pytest.mark.parametrize("case", sorted(BAD_TURNS))
def test_bad_turn_fails_alone_with_a_clear_error(pipeline: Pipeline, case: str) -> None:
    fields, code, named = BAD_TURNS[case]
    sid = session()

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        async with TokenManagementClient() as client:
            await client.create_completion(
                session_id=sid, messages=[user("first")], model=BIG_MODEL
            )
            raw = {**good_turn(sid, "bad-turn"), **fields}
            client._producer.send(TASK_INGEST_TURN, raw)
            failed, other = await asyncio.gather(
                client.wait_for_turn(sid, "bad-turn", timeout=WAIT), bystander(client)
            )
            after = await client.create_completion(
                session_id=sid, messages=[user("second")], model=BIG_MODEL
            )
            assert after["content"].endswith("You said: second")
            return failed, other, await client.get_transcript(sid)

    failed, other, transcript = run(scenario())
    assert failed["type"] == EventType.TURN_FAILED
    assert (failed["code"], named in failed["message"]) == (code, True), failed
    assert other["content"].endswith("You said: still here")
    assert [m["content"] for m in transcript] == [
        "first",
        transcript[1]["content"],
        "second",
        transcript[3]["content"],
    ], "the bad turn stored nothing; the good ones are intact"


WORKER_ONLY = {"unknown model", "tool result without its call"}
"""The client checks models separately, and only the worker knows the session's tool calls."""


@pytest.mark.parametrize("case", sorted(set(BAD_TURNS) - WORKER_ONLY))
def test_client_refuses_the_same_input_before_sending(case: str) -> None:
    fields, _, named = BAD_TURNS[case]
    turn = {**good_turn(session(), uuid.uuid4().hex), **fields}
    turn.pop("turn_id")
    extra = {k: v for k, v in turn.items() if k not in ("session_id", "messages", "model")}

    async def scenario() -> None:
        async with TokenManagementClient() as client:
            with pytest.raises(InvalidInputError, match=None) as refused:
                await client.submit_turn(
                    turn["session_id"], turn["messages"], turn["model"], **extra
                )
            assert named in refused.value.message

    if set(extra) - {"strategy", "temperature", "max_tokens"}:
        with pytest.raises(TypeError):  # not a client keyword at all
            run(scenario())
        return
    run(scenario())


def test_client_refuses_an_unknown_model() -> None:
    async def scenario() -> None:
        async with TokenManagementClient() as client:
            with pytest.raises(UnknownModelError, match="did you mean"):
                await client.submit_turn(session(), [user("x")], "gpt-4oo")

    run(scenario())


def task_result(pipeline: Pipeline, task_id: str) -> dict[str, Any]:
    producer = TaskProducer(TEST_REDIS_URL, backend_url=TEST_REDIS_URL)
    try:
        result: dict[str, Any] = producer.app.AsyncResult(task_id).get(timeout=WAIT)
        return result
    finally:
        producer.close()


@pytest.mark.parametrize("bad_id", BAD_SESSION_IDS, ids=repr)
def test_session_ids_that_could_alias_keys_are_refused(pipeline: Pipeline, bad_id: str) -> None:
    """No event can be published for such an id; the task result says why."""

    async def scenario() -> tuple[str, dict[str, Any]]:
        async with TokenManagementClient() as client:
            with pytest.raises(InvalidInputError, match="session_id"):
                await client.submit_turn(bad_id, [user("x")], BIG_MODEL)
            task_id = client._producer.send(TASK_INGEST_TURN, good_turn(bad_id, "t1"))
            return task_id, await bystander(client)

    task_id, other = run(scenario())
    result = task_result(pipeline, task_id)
    assert (result["status"], result["code"]) == ("failed", "invalid_input")
    assert "session_id" in result["message"]
    assert other["content"].endswith("You said: still here")


def test_positional_arguments_and_wrong_id_types_are_refused(pipeline: Pipeline) -> None:
    producer = TaskProducer(TEST_REDIS_URL, backend_url=TEST_REDIS_URL)
    try:
        positional = producer.app.send_task(TASK_INGEST_TURN, args=["s", "t"], queue=TURN_QUEUE)
        numeric = producer.app.send_task(
            TASK_INGEST_TURN, kwargs=good_turn(123, "t"), queue=TURN_QUEUE
        )
        first, second = positional.get(timeout=WAIT), numeric.get(timeout=WAIT)
    finally:
        producer.close()
    assert first["code"] == "invalid_input" and "keyword arguments" in first["message"]
    assert second["code"] == "invalid_input" and "session_id" in second["message"]


def test_a_million_tiny_messages_are_refused_by_count(pipeline: Pipeline) -> None:
    """Refused on ``len`` alone, before a million messages are validated or stored."""
    sid = session()
    tiny = [user("x")] * 1_000_000

    async def scenario() -> dict[str, Any]:
        async with TokenManagementClient() as client:
            with pytest.raises(InvalidInputError, match=f"{MAX_MESSAGES_PER_TURN:,}"):
                await client.submit_turn(sid, tiny, BIG_MODEL)
            await asyncio.to_thread(
                client._producer.send,
                TASK_INGEST_TURN,
                {**good_turn(sid, "many"), "messages": tiny},
            )
            failed, _ = await asyncio.gather(
                client.wait_for_turn(sid, "many", timeout=60), bystander(client)
            )
            return failed

    failed = run(scenario())
    assert failed["code"] == "invalid_input"
    assert f"limit is {MAX_MESSAGES_PER_TURN:,}" in failed["message"]


def test_a_50_mb_message_is_refused_naming_the_limit(pipeline: Pipeline) -> None:
    sid = session()
    huge = [user("y" * 50_000_000)]

    async def scenario() -> dict[str, Any]:
        async with TokenManagementClient() as client:
            with pytest.raises(InvalidInputError, match=f"the limit is {MAX_MESSAGE_CHARS:,}"):
                await client.submit_turn(sid, huge, BIG_MODEL)
            await asyncio.to_thread(
                client._producer.send,
                TASK_INGEST_TURN,
                {**good_turn(sid, "huge"), "messages": huge},
            )
            failed, _ = await asyncio.gather(
                client.wait_for_turn(sid, "huge", timeout=60), bystander(client)
            )
            return failed

    failed = run(scenario())
    assert failed["code"] == "invalid_input"
    assert "50,000,000 characters; the limit is" in failed["message"]


def test_control_characters_pass_through_intact(pipeline: Pipeline) -> None:
    """Valid JSON text, however odd, is stored and returned byte for byte, not rejected."""
    sid = session()
    odd = "nul\x00 bell\x07 escape\x1b[31m tab\t cr\r del\x7f zero-width\u200b rtl\u202e"

    async def scenario() -> list[Any]:
        async with TokenManagementClient() as client:
            await client.create_completion(session_id=sid, messages=[user(odd)], model=BIG_MODEL)
            return await client.get_transcript(sid)

    transcript = run(scenario())
    assert transcript[0] == user(odd)


def test_a_body_that_is_not_utf8_is_dropped_and_the_worker_serves_on(
    pipeline: Pipeline, redis_client: redis.Redis
) -> None:
    """Invalid UTF-8 cannot name a session; the worker logs the decode error and carries on."""
    with Connection(TEST_REDIS_URL) as conn:
        conn.Producer().publish(
            b'{"session_id": "\xff\xfe broken"}',
            routing_key=TURN_QUEUE,
            content_type="application/json",
            content_encoding="utf-8",
            headers={"task": TASK_INGEST_TURN, "id": str(uuid.uuid4()), "lang": "py"},
            declare=[],
        )

    async def scenario() -> dict[str, Any]:
        async with TokenManagementClient() as client:
            return await bystander(client)

    assert run(scenario())["content"].endswith("You said: still here")
    (worker,) = pipeline.workers
    assert worker.process is not None and worker.process.poll() is None


def test_bad_turn_errors_are_token_window_errors() -> None:
    """Callers can catch one base class for every refusal above."""
    assert issubclass(InvalidInputError, TokenWindowError)
    assert issubclass(UnknownModelError, TokenWindowError)
