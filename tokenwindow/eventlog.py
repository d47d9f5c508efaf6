"""Publishing session events: one atomic step per event.

A Lua script assigns the turn's next ``seq``, appends the event to the session's capped stream
and publishes it (with its stream entry id) on the session's channel; for token events it also
appends the text to the turn's published-text key and refreshes the turn's heartbeat. Doing it
all in one script means replay (stream), live delivery (channel) and what a redelivered task
believes was already shown can never disagree.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
import redis.asyncio

from tokenwindow.constants import events_channel, events_stream_key, turn_key, turn_text_key
from tokenwindow.events import Event, EventType

PUBLISH_SCRIPT = """
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
local body = string.sub(ARGV[1], 1, -2) .. ',"seq":' .. seq .. '}'
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'event', body)
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', KEYS[3], string.sub(body, 1, -2) .. ',"id":"' .. id .. '"}')
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'heartbeat', ARGV[5])
  redis.call('APPEND', KEYS[4], ARGV[4])
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
return {seq, id}
"""


def _encode(session_id: str, turn_id: str, event_type: EventType, fields: dict[str, Any]) -> str:
    event = {
        "type": str(event_type),
        "session_id": session_id,
        "turn_id": turn_id,
        "ts": round(time.time(), 6),
        **fields,
    }
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def _keys(session_id: str, turn_id: str) -> list[str]:
    return [
        turn_key(session_id, turn_id),
        events_stream_key(session_id),
        events_channel(session_id),
        turn_text_key(session_id, turn_id),
    ]


def _result(body: str, reply: list[Any]) -> Event:
    event: Event = json.loads(body)
    seq, entry_id = reply
    event["seq"] = int(seq)
    event["id"] = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return event


class EventLog:
    """Publishes events for sessions through a synchronous Redis client (workers)."""

    def __init__(self, client: redis.Redis, *, maxlen: int, ttl_seconds: int) -> None:
        self._script = client.register_script(PUBLISH_SCRIPT)
        self._maxlen = maxlen
        self._ttl = ttl_seconds

    def publish(self, session_id: str, turn_id: str, event_type: EventType, **fields: Any) -> Event:
        body = _encode(session_id, turn_id, event_type, fields)
        args: list[str | int] = [body, self._maxlen, self._ttl, ""]
        return _result(body, self._script(keys=_keys(session_id, turn_id), args=args))

    def publish_token(self, session_id: str, turn_id: str, text: str, attempt: int) -> Event:
        """A ``token`` event, recording its text as published for this turn."""
        body = _encode(session_id, turn_id, EventType.TOKEN, {"text": text, "attempt": attempt})
        args: list[str | float] = [body, self._maxlen, self._ttl, text, time.time()]
        return _result(body, self._script(keys=_keys(session_id, turn_id), args=args))


class AsyncEventLog:
    """The same, for asyncio producers (the client publishes ``turn_queued``)."""

    def __init__(self, client: redis.asyncio.Redis, *, maxlen: int, ttl_seconds: int) -> None:
        self._script = client.register_script(PUBLISH_SCRIPT)
        self._maxlen = maxlen
        self._ttl = ttl_seconds

    async def publish(
        self, session_id: str, turn_id: str, event_type: EventType, **fields: Any
    ) -> Event:
        body = _encode(session_id, turn_id, event_type, fields)
        reply = await self._script(
            keys=_keys(session_id, turn_id), args=[body, self._maxlen, self._ttl, ""]
        )
        return _result(body, reply)
