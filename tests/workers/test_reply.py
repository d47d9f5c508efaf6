"""Exactly-once delivery across attempts: what a new attempt publishes, given the last one's."""

from __future__ import annotations

from workers.provider_stream import StreamDelta, ToolCallDelta
from workers.reply import Action, ReplyTracker


def feed(tracker: ReplyTracker, *pieces: str) -> list[Action]:
    actions: list[Action] = []
    for piece in pieces:
        actions += tracker.feed(StreamDelta(piece))
    return actions + tracker.end()


def test_a_first_attempt_publishes_every_piece() -> None:
    assert feed(ReplyTracker(""), "Hel", "lo") == [("token", "Hel"), ("token", "lo")]


def test_a_redelivery_resumes_after_what_was_shown() -> None:
    tracker = ReplyTracker("Hello wo")
    assert feed(tracker, "Hel", "lo ", "world", "!") == [("token", "rld"), ("token", "!")]
    assert tracker.text == "Hello world!"


def test_a_divergent_attempt_restarts_the_turn() -> None:
    actions = feed(ReplyTracker("Hello wo"), "Hel", "p me")
    assert actions == [("reset", None), ("token", "Help me")]


def test_an_attempt_that_ends_inside_the_shown_text_replaces_it() -> None:
    assert feed(ReplyTracker("Hello world"), "Hello") == [("reset", None), ("token", "Hello")]


def test_tool_calls_published_before_restart_the_turn() -> None:
    tracker = ReplyTracker("", tools_published=True)
    call = ToolCallDelta(index=0, id="call_1", name="w", arguments='{"a":')
    actions = tracker.feed(StreamDelta("", (call,)))
    actions += tracker.feed(StreamDelta("", (ToolCallDelta(0, None, None, "1}"),)))
    assert actions[0] == ("reset", None)
    assert [a for a in actions if a[0] == "tool"][1][1]["arguments"] == "1}"
    assert tracker.tool_calls() == [
        {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": '{"a":1}'}}
    ]
