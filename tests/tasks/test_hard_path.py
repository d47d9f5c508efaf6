"""The hard path never strands a turn: compression hands it on to generation however it ends."""

from __future__ import annotations

from typing import Any

import pytest
import redis

import tasks.compression
from tokenwindow.constants import TASK_COMPLETE_TURN
from tokenwindow.models import OFFLINE_MODEL

THEN = {"session_id": "hard-s", "turn_id": "hard-t", "model": OFFLINE_MODEL}


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        tasks.compression.app,
        "send_task",
        lambda name, kwargs: calls.append((name, kwargs)),
    )
    return calls


def compress(**extra: Any) -> Any:
    kwargs = {
        "session_id": "hard-s",
        "turn_id": "hard-t",
        "model": OFFLINE_MODEL,
        "strategy": "hybrid",
        "reason": "hard",
        **extra,
    }
    return tasks.compression.compress_session.apply(kwargs=kwargs)


@pytest.mark.parametrize(
    "failure",
    [RuntimeError("bad stored data"), redis.exceptions.ResponseError("WRONGTYPE")],
    ids=["bug", "redis-error"],
)
def test_a_failing_compression_still_sends_the_turn_on(
    failure: Exception,
    sent: list[tuple[str, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    redis_client: redis.Redis,
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise failure

    monkeypatch.setattr(tasks.compression, "_compress_session", broken)
    compress(then=THEN)
    assert sent == [(TASK_COMPLETE_TURN, THEN)], "generation follows on a failsafed window"


def test_a_background_compression_failure_is_raised_not_handed_on(
    sent: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch, redis_client: Any
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(tasks.compression, "_compress_session", broken)
    assert isinstance(compress().result, RuntimeError)
    assert sent == []


def test_nothing_to_compress_still_hands_on(
    sent: list[tuple[str, dict[str, Any]]], redis_client: Any
) -> None:
    compress(then=THEN)
    assert sent == [(TASK_COMPLETE_TURN, THEN)]
