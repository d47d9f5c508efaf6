"""Session events: the JSON objects published to a session's stream and channel.

Every event has ``type``, ``session_id``, ``turn_id``, ``seq`` (monotonic per turn, assigned
atomically when published), ``id`` (the Redis Stream entry id) and ``ts`` (unix seconds). The
other fields depend on the type; the README lists them.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    TURN_QUEUED = "turn_queued"
    TURN_STARTED = "turn_started"
    TOKEN = "token"
    TOOL_CALL = "tool_call"
    """A fragment of a reply's tool call: ``index``, ``call_id`` and ``name`` (first fragment
    of each call), ``arguments`` (a piece of the JSON arguments). Not ``id``: that is every
    event's stream entry id."""
    TURN_RESTARTED = "turn_restarted"
    """A redelivered completion produced different text: discard this turn's earlier tokens."""
    TURN_COMPLETED = "turn_completed"
    TURN_FAILED = "turn_failed"
    MODEL_FALLBACK = "model_fallback"
    """The turn's window could not fit its model without cutting the newest turn: it goes to
    the configured larger model (``context_window_fallbacks``) instead."""
    COMPRESSION_STARTED = "compression_started"
    COMPRESSION_COMPLETED = "compression_completed"
    COMPRESSION_FAILED = "compression_failed"


TERMINAL_TURN_EVENTS = frozenset((EventType.TURN_COMPLETED, EventType.TURN_FAILED))

Event = dict[str, Any]


def decode_event(raw: str | bytes, entry_id: str | bytes | None = None) -> Event:
    """Parse an event from a stream entry or a channel message, filling in ``id``."""
    event: Event = json.loads(raw)
    if entry_id is not None:
        event["id"] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return event


def is_terminal(event: Event) -> bool:
    return event.get("type") in TERMINAL_TURN_EVENTS
