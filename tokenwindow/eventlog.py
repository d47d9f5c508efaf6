"""Publishing session events: one atomic step per batch of a turn's events.

A Lua script assigns each event the turn's next ``seq``, appends it to the session's capped
stream and publishes it (with its stream entry id) on the session's channel. A ``token`` event
also appends its text to what the turn has published, so a redelivered completion knows what
subscribers have already seen; ``turn_restarted`` forgets that text. Doing it in one script
means replay (stream), live delivery (channel) and the published record can never disagree.

``EMIT_LUA`` is the shared step; the turn ledger's scripts (``workers.ledger``) start with it so
that a transition and the event it publishes are one atomic script.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio

from tokenwindow.constants import events_channel, events_stream_key, turns_key
from tokenwindow.events import Event, EventType

EMIT_LUA = """
-- Append one event to the session's stream and channel; the turn's seq counter lives in the
-- ledger hash (field TURN:seq). body is the event's JSON object without seq and id.
local function emit(turns, stream, channel, turn_id, body, maxlen, ttl)
  local seq = redis.call('HINCRBY', turns, turn_id .. ':seq', 1)
  local full = string.sub(body, 1, -2) .. ',"seq":' .. seq .. '}'
  local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'event', full)
  redis.call('EXPIRE', stream, ttl)
  redis.call('PUBLISH', channel, string.sub(full, 1, -2) .. ',"id":"' .. id .. '"}')
  return {seq, id}
end
"""

PUBLISH_LUA = (
    EMIT_LUA
    + """
-- KEYS: ledger hash, event stream, channel
-- ARGV: turn_id, maxlen, ttl, then (kind, body, text) per event
-- kind: event | token (text is appended to what was published) | tool | reset
local tid, maxlen, ttl = ARGV[1], ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV, 3 do
  local kind, body, text = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local r = emit(KEYS[1], KEYS[2], KEYS[3], tid, body, maxlen, ttl)
  if kind == 'token' then
    local seen = redis.call('HGET', KEYS[1], tid .. ':text') or ''
    redis.call('HSET', KEYS[1], tid .. ':text', seen .. text)
  elseif kind == 'tool' then
    redis.call('HSET', KEYS[1], tid .. ':tools', '1')
  elseif kind == 'reset' then
    redis.call('HDEL', KEYS[1], tid .. ':text', tid .. ':tools')
  end
  out[#out + 1] = r[1]
  out[#out + 1] = r[2]
end
redis.call('EXPIRE', KEYS[1], ttl)
return out
"""
)

KIND_EVENT, KIND_TOKEN, KIND_TOOL, KIND_RESET = "event", "token", "tool", "reset"


def encode_event(
    session_id: str, turn_id: str, event_type: EventType, fields: dict[str, Any]
) -> str:
    """An event's JSON without ``seq`` and ``id`` (the scripts add them)."""
    event = {
        "type": str(event_type),
        "session_id": session_id,
        "turn_id": turn_id,
        "ts": round(time.time(), 6),
        **fields,
    }
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def event_keys(session_id: str) -> list[str]:
    """The keys an event touches, in the order the scripts expect them."""
    return [turns_key(session_id), events_stream_key(session_id), events_channel(session_id)]


def finish_event(body: str, seq: object, entry_id: object) -> Event:
    event: Event = json.loads(body)
    event["seq"] = int(str(seq))
    event["id"] = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return event


def publish_args(
    turn_id: str, maxlen: int, ttl: int, batch: Sequence[tuple[str, str, str]]
) -> list[str | int]:
    """ARGV for ``PUBLISH_LUA``: the fixed head, then (kind, body, text) per event."""
    args: list[str | int] = [turn_id, maxlen, ttl]
    for kind, body, text in batch:
        args += [kind, body, text]
    return args


class EventLog:
    """Publishes events for sessions through a synchronous Redis client (workers)."""

    def __init__(self, client: redis.Redis, *, maxlen: int, ttl_seconds: int) -> None:
        self._script = client.register_script(PUBLISH_LUA)
        self._maxlen = maxlen
        self._ttl = ttl_seconds

    def publish(self, session_id: str, turn_id: str, event_type: EventType, **fields: Any) -> Event:
        body = encode_event(session_id, turn_id, event_type, fields)
        args = publish_args(turn_id, self._maxlen, self._ttl, [(KIND_EVENT, body, "")])
        seq, entry_id = self._script(keys=event_keys(session_id), args=args)
        return finish_event(body, seq, entry_id)


class AsyncEventLog:
    """The same, for asyncio producers (the client publishes ``turn_queued``)."""

    def __init__(self, client: redis.asyncio.Redis, *, maxlen: int, ttl_seconds: int) -> None:
        self._script = client.register_script(PUBLISH_LUA)
        self._maxlen = maxlen
        self._ttl = ttl_seconds

    async def publish(
        self, session_id: str, turn_id: str, event_type: EventType, **fields: Any
    ) -> Event:
        body = encode_event(session_id, turn_id, event_type, fields)
        args = publish_args(turn_id, self._maxlen, self._ttl, [(KIND_EVENT, body, "")])
        seq, entry_id = await self._script(keys=event_keys(session_id), args=args)
        return finish_event(body, seq, entry_id)
