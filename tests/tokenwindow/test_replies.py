"""Folding a turn's events into its reply: restarts, tool calls, the provider's figures."""

from __future__ import annotations

from typing import Any

import pytest

from tokenwindow.errors import TurnFailedError
from tokenwindow.replies import ReplyAssembler


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "session_id": "s", "turn_id": "t", **fields}


def test_a_restart_drops_the_abandoned_attempt() -> None:
    reply = ReplyAssembler()
    for item in (
        event("token", text="The answer is "),
        event("token", text="four"),
        event("turn_restarted", attempt=2),
        event("token", text="The answer is 4."),
        event("turn_completed", finish_reason="stop", prompt_tokens=12, completion_tokens=5),
    ):
        reply.feed(item)
    assert reply.done and reply.text == "The answer is 4."
    assert reply.result() == {
        "content": "The answer is 4.",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        "tool_calls": [],
    }


def test_tool_call_fragments_assemble_and_the_completed_list_wins() -> None:
    fragments = ReplyAssembler()
    for item in (
        event("tool_call", index=0, call_id="call_1", name="lookup", arguments='{"q": '),
        event("tool_call", index=1, call_id="call_2", name="clock", arguments="{}"),
        event("tool_call", index=0, call_id=None, name=None, arguments='"tea"}'),
        event("turn_completed", finish_reason="tool_calls"),
    ):
        fragments.feed(item)
    assert fragments.usage is None
    assert [c["function"] for c in fragments.tool_calls] == [
        {"name": "lookup", "arguments": '{"q": "tea"}'},
        {"name": "clock", "arguments": "{}"},
    ]
    final = [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    reported = ReplyAssembler()
    reported.feed(event("tool_call", index=0, call_id="call_1", name="lookup", arguments="{"))
    reported.feed(event("turn_completed", finish_reason="tool_calls", tool_calls=final))
    assert reported.tool_calls == final


def test_a_failed_turn_raises_with_its_code_and_delay() -> None:
    reply = ReplyAssembler()
    with pytest.raises(TurnFailedError) as failed:
        reply.feed(event("turn_failed", code="rate_limited", message="slow down", retry_after=3))
    assert failed.value.code == "rate_limited" and failed.value.retry_after == 3
