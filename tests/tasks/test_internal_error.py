"""A bug inside a turn fails that turn visibly and frees its session for the next one."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

import tasks.turns
from tokenwindow.constants import events_stream_key, turn_order_key
from tokenwindow.models import OFFLINE_MODEL


def test_an_unexpected_exception_fails_the_turn_and_frees_the_session(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(tasks.turns, "stream_reply", broken)
    turn = {
        "session_id": "bug-session",
        "turn_id": "bug-turn",
        "messages": [{"role": "user", "content": "hello"}],
        "model": OFFLINE_MODEL,
    }
    result = tasks.turns.ingest_turn.apply(kwargs=turn)
    assert isinstance(result.result, RuntimeError), "the trace is kept for the task result"
    events = [
        json.loads(f[b"event"]) for _, f in redis_client.xrange(events_stream_key("bug-session"))
    ]
    assert events[-1]["type"] == "turn_failed"
    assert events[-1]["code"] == "internal_error"
    assert redis_client.zcard(turn_order_key("bug-session")) == 0, "the session is free"
