"""Event encoding: the streaming fast path writes exactly what ``encode_event`` writes."""

from __future__ import annotations

import json

import pytest

from tokenwindow import eventlog
from tokenwindow.eventlog import TokenEncoder, encode_event
from tokenwindow.events import EventType


@pytest.mark.parametrize(
    "text", ["plain", "", 'quote " and \\ slash', "line\nbreak\t", "日本 é \u2028"]
)
def test_token_events_are_encoded_byte_for_byte_like_any_event(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(eventlog.time, "time", lambda: 1733333333.1234567)
    session_id, turn_id = 'session "quoted" ,"ts":1', "turn-é"
    fast = TokenEncoder(session_id, turn_id, 3)(text)
    fields = {"text": text, "attempt": 3}
    assert fast == encode_event(session_id, turn_id, EventType.TOKEN, fields)
    assert json.loads(fast)["text"] == text
