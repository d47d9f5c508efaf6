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
from json.encoder import encode_basestring
from typing import Any

import redis
import redis.asyncio

from tokenwindow.constants import events_channel, events_stream_key, turns_key
from tokenwindow.events import Event, EventType

EMIT_LUA = """
-- Append one event to the session's stream and channel; the turn's seq counter lives in the
-- ledger hash (field TURN:seq). body is the event's JSON object without seq and id. The caller
-- sets the stream's expiry once per script, however many events it emits.
local function emit(turns, stream, channel, turn_id, body, maxlen)
  local seq = redis.call('HINCRBY', turns, turn_id .. ':seq', 1)
  local full = string.sub(body, 1, -2) .. ',"seq":' .. seq .. '}'
  local id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'event', full)
  redis.call('PUBLISH', channel, string.sub(full, 1, -2) .. ',"id":"' .. id .. '"}')
  return {seq, id}
end
"""

PUBLISH_LUA = (
    EMIT_LUA
    + """
-- One group of events per session, in order; a flush carries every stream's group at once.
-- KEYS: per group: ledger hash, event stream, channel
-- ARGV: maxlen, ttl, then per group: turn_id, event count, then (kind, body, text) per event
-- kind: event | token (text is appended to what was published) | tool | reset
-- ttl 0 leaves the keys' expiry alone (a streaming reply's lease renewals keep it).
local maxlen, ttl = ARGV[1], tonumber(ARGV[2])
local out = {}
local a = 3
for k = 1, #KEYS, 3 do
  local turns, stream, channel = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local tid, count = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  local added = {}
  for _ = 1, count do
    local kind, body, text = ARGV[a], ARGV[a + 1], ARGV[a + 2]
    a = a + 3
    local r = emit(turns, stream, channel, tid, body, maxlen)
    if kind == 'token' then
      added[#added + 1] = text
    elseif kind == 'tool' then
      redis.call('HSET', turns, tid .. ':tools', '1')
    elseif kind == 'reset' then
      redis.call('HDEL', turns, tid .. ':text', tid .. ':tools')
      added = {}
    end
    out[#out + 1] = r[1]
    out[#out + 1] = r[2]
  end
  if #added > 0 then
    local seen = redis.call('HGET', turns, tid .. ':text') or ''
    redis.call('HSET', turns, tid .. ':text', seen .. table.concat(added))
  end
  if ttl > 0 then
    redis.call('EXPIRE', turns, ttl)
    redis.call('EXPIRE', stream, ttl)
  end
end
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


class TokenEncoder:
    """``encode_event`` for one turn's ``token`` events, the same JSON byte for byte.

    Streams encode one token event per flush per reply, the hottest encoding there is: the
    fixed fields are encoded once per reply, and each event only adds its time and text.
    """

    def __init__(self, session_id: str, turn_id: str, attempt: int) -> None:
        empty = encode_event(session_id, turn_id, EventType.TOKEN, {"attempt": attempt})
        head, _, rest = empty.partition(',"ts":')
        self._head = head + ',"ts":'
        self._tail = rest[rest.index(",") :]

    def __call__(self, text: str) -> str:
        stamp = repr(round(time.time(), 6))
        return f'{self._head}{stamp},"text":{encode_basestring(text)}{self._tail}'


def event_keys(session_id: str) -> list[str]:
    """The keys an event touches, in the order the scripts expect them."""
    return [turns_key(session_id), events_stream_key(session_id), events_channel(session_id)]


def finish_event(body: str, seq: object, entry_id: object) -> Event:
    event: Event = json.loads(body)
    event["seq"] = int(str(seq))
    event["id"] = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return event


Triple = tuple[str, str, str]
"""One event for ``PUBLISH_LUA``: (kind, body, text)."""


def publish_call(
    maxlen: int, ttl: int, groups: Sequence[tuple[str, str, Sequence[Triple]]]
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV for ``PUBLISH_LUA``: (session_id, turn_id, events) per group.

    Groups of different sessions touch keys in different cluster slots: on Redis Cluster, one
    group per call.
    """
    keys: list[str] = []
    args: list[str | int] = [maxlen, ttl]
    for session_id, turn_id, batch in groups:
        keys += event_keys(session_id)
        args += [turn_id, len(batch)]
        for triple in batch:
            args += triple
    return keys, args


class EventLog:
    """Publishes events for sessions through a synchronous Redis client (workers)."""

    def __init__(self, client: redis.Redis, *, maxlen: int, ttl_seconds: int) -> None:
        self._script = client.register_script(PUBLISH_LUA)
        self._maxlen = maxlen
        self._ttl = ttl_seconds

    def publish(self, session_id: str, turn_id: str, event_type: EventType, **fields: Any) -> Event:
        body = encode_event(session_id, turn_id, event_type, fields)
        keys, args = publish_call(
            self._maxlen, self._ttl, [(session_id, turn_id, [(KIND_EVENT, body, "")])]
        )
        seq, entry_id = self._script(keys=keys, args=args)
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
        keys, args = publish_call(
            self._maxlen, self._ttl, [(session_id, turn_id, [(KIND_EVENT, body, "")])]
        )
        seq, entry_id = await self._script(keys=keys, args=args)
        return finish_event(body, seq, entry_id)
