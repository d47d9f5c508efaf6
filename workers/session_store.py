"""Sessions in Redis: the raw transcript, the working window, and per-session turn order.

The transcript is append-only: compression never removes a message from it. The working window
is derived: pinned system messages + the running summary + ``transcript[window_start:]``.
Compression changes only (summary, window_start, pinned), with a compare-and-set so a summary
computed from an old window is never applied over a newer compression.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from strategies.summary import parse_summary, summary_message
from tokenwindow.constants import (
    ARRIVAL_COUNTER_KEY,
    SESSIONS_INDEX_KEY,
    session_key,
    transcript_key,
    turn_key,
    turn_lease_key,
    turn_order_key,
    turn_text_key,
)
from tokenwindow.counting import REPLY_PRIMING, TokenCounter, message_key
from tokenwindow.messages import Message, is_system
from tokenwindow.sessions import Entry, decode_hash, text_of_reply

ACQUIRE_SCRIPT = """
-- KEYS: order zset, arrivals counter, head turn hash (resolved below via ARGV)
-- ARGV: turn_id, ttl, now, stale_after, turn hash prefix
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local head = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
if head ~= ARGV[1] then
  local beat = tonumber(redis.call('HGET', ARGV[5] .. head, 'heartbeat') or '0')
  if beat > 0 and tonumber(ARGV[3]) - beat > tonumber(ARGV[4]) then
    redis.call('ZREM', KEYS[1], head)
    head = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  end
end
if head == ARGV[1] then
  redis.call('HSET', ARGV[5] .. ARGV[1], 'heartbeat', ARGV[3])
  redis.call('EXPIRE', ARGV[5] .. ARGV[1], ARGV[2])
  return 1
end
return 0
"""


@dataclass
class WorkingWindow:
    """What the model is sent (before a failsafe), and where it came from in the transcript."""

    messages: list[Message]
    tokens: int
    """Prompt tokens, reply priming included."""
    window_start: int
    prefix_len: int
    """How many leading messages are pinned system messages or the summary."""
    summary: str | None
    verbatim_tokens: list[int] = field(default_factory=list)

    def transcript_index(self, window_index: int) -> int:
        """Map an index in ``messages`` (past the prefix) back to the transcript."""
        return self.window_start + max(window_index - self.prefix_len, 0)


def _chain(digest: str, key: str) -> str:
    return message_key({"role": "system", "content": digest + key})


class SessionStore:
    """All session state for the workers, over one synchronous Redis client."""

    def __init__(self, client: redis.Redis, *, ttl_seconds: int, stale_after: int) -> None:
        self.redis = client
        self.ttl = ttl_seconds
        self.stale_after = stale_after
        self._acquire = client.register_script(ACQUIRE_SCRIPT)

    # --- turn order ------------------------------------------------------------------------
    def acquire_turn(self, session_id: str, turn_id: str) -> bool:
        """Join the session's FIFO and report whether this turn may run now."""
        keys = [turn_order_key(session_id), ARRIVAL_COUNTER_KEY]
        prefix = turn_key(session_id, "")
        args: list[str | float] = [turn_id, self.ttl, time.time(), self.stale_after, prefix]
        return bool(self._acquire(keys=keys, args=args))

    def heartbeat(self, session_id: str, turn_id: str) -> None:
        self.redis.hset(turn_key(session_id, turn_id), "heartbeat", time.time())

    def claim_generation(self, session_id: str, turn_id: str, owner: str, ttl: int) -> bool:
        """Become the one task generating this turn's reply (or already be it).

        A redelivered task keeps its id and so reclaims its own lease at once; a second task
        for the same turn waits until the first finishes or its lease runs out.
        """
        key = turn_lease_key(session_id, turn_id)
        if self.redis.set(key, owner, nx=True, ex=ttl):
            return True
        return text_of_reply(self.redis.get(key)) == owner

    def release_generation(self, session_id: str, turn_id: str, owner: str) -> None:
        key = turn_lease_key(session_id, turn_id)
        if text_of_reply(self.redis.get(key)) == owner:
            self.redis.delete(key)

    def count_provider_retry(self, session_id: str, turn_id: str) -> int:
        """How many provider retries this turn has used, this one included."""
        return int(self.redis.hincrby(turn_key(session_id, turn_id), "provider_retries", 1))

    def start_attempt(self, session_id: str, turn_id: str) -> tuple[int, str]:
        """Number this generation attempt; return it with the text earlier attempts published."""
        pipe = self.redis.pipeline()
        pipe.hincrby(turn_key(session_id, turn_id), "attempt", 1)
        pipe.get(turn_text_key(session_id, turn_id))
        attempt, seen = pipe.execute()
        return int(attempt), text_of_reply(seen)

    def published_text(self, session_id: str, turn_id: str) -> str:
        return text_of_reply(self.redis.get(turn_text_key(session_id, turn_id)))

    def forget_published(self, session_id: str, turn_id: str) -> None:
        self.redis.delete(turn_text_key(session_id, turn_id))

    def release_turn(self, session_id: str, turn_id: str) -> None:
        self.redis.zrem(turn_order_key(session_id), turn_id)

    # --- turns -----------------------------------------------------------------------------
    def turn_state(self, session_id: str, turn_id: str) -> dict[str, str]:
        raw = self.redis.hgetall(turn_key(session_id, turn_id))
        return decode_hash(raw)

    def set_turn_state(self, session_id: str, turn_id: str, **fields: str | float) -> None:
        key = turn_key(session_id, turn_id)
        pipe = self.redis.pipeline()
        mapping: dict[Any, Any] = dict(fields)
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, self.ttl)
        pipe.execute()

    # --- sessions --------------------------------------------------------------------------
    def meta(self, session_id: str) -> dict[str, str]:
        raw = self.redis.hgetall(session_key(session_id))
        return decode_hash(raw)

    def new_suffix(self, meta: dict[str, str], messages: Sequence[Message]) -> list[Message]:
        """The messages not yet in the transcript, and their content keys.

        A caller that resends the whole history (as OpenAI clients do) is recognised by a
        chained digest of the transcript: if the first ``n`` messages of the request chain to the
        stored digest, only the rest is new. The digest costs O(request), never O(history).
        """
        stored = int(meta.get("messages", "0"))
        if stored and len(messages) > stored:
            prefix_digest = ""
            for message in messages[:stored]:
                prefix_digest = _chain(prefix_digest, message_key(message))
            if prefix_digest == meta.get("digest", ""):
                return list(messages[stored:])
        return list(messages)

    def append_turn(
        self,
        session_id: str,
        turn_id: str,
        messages: Sequence[Message],
        counter: TokenCounter,
        *,
        model: str,
        strategy: str,
        status_field: str = "ingested",
    ) -> list[Entry]:
        """Append messages atomically with the session's counters and the turn's marker.

        Runs once per (turn, ``status_field``): the transaction re-checks the marker, so a
        redelivered task that races the first delivery appends nothing.
        """
        entries = [Entry(m, counter.count_message(m), turn_id) for m in messages]
        skey, tkey, turn = (
            session_key(session_id),
            transcript_key(session_id),
            turn_key(session_id, turn_id),
        )
        added = sum(e.tokens for e in entries)
        now = time.time()

        def transaction(pipe: redis.client.Pipeline) -> None:
            if pipe.hget(turn, status_field):
                pipe.multi()
                return
            meta = decode_hash(pipe.hgetall(skey))
            digest = meta.get("digest", "")
            for entry in entries:
                digest = _chain(digest, message_key(entry.message))
            pipe.multi()
            if entries:
                pipe.rpush(tkey, *(e.dumps() for e in entries))
            pipe.hset(
                skey,
                mapping={
                    "model": model,
                    "strategy": strategy,
                    "digest": digest,
                    "updated_at": now,
                    "encoding": counter.encoding_name,
                },
            )
            pipe.hsetnx(skey, "created_at", now)
            pipe.hincrby(skey, "messages", len(entries))
            pipe.hincrby(skey, "window_tokens", added)
            pipe.hincrby(skey, "total_tokens", added)
            pipe.hset(turn, status_field, now)
            pipe.zadd(SESSIONS_INDEX_KEY, {session_id: now})
            for key in (skey, tkey, turn):
                pipe.expire(key, self.ttl)

        self.redis.transaction(transaction, turn, skey)
        return entries

    def prompt_tokens(self, session_id: str, counter: TokenCounter) -> int:
        """The working window's prompt size, from the cached total when the encoding matches."""
        meta = self.meta(session_id)
        if meta.get("encoding") == counter.encoding_name:
            return REPLY_PRIMING + int(meta.get("window_tokens", "0"))
        return self.working_window(session_id, counter).tokens

    def working_window(self, session_id: str, counter: TokenCounter) -> WorkingWindow:
        """Read the window; recount only if the session was counted with another encoding."""
        meta = self.meta(session_id)
        start = int(meta.get("window_start", "0"))
        summary = meta.get("summary") or None
        pinned: list[Message] = json.loads(meta.get("pinned", "[]"))
        prefix = pinned + ([summary_message(summary)] if summary else [])
        entries = [
            Entry.loads(raw) for raw in self.redis.lrange(transcript_key(session_id), start, -1)
        ]
        recount = meta.get("encoding") != counter.encoding_name
        verbatim = [counter.count_message(e.message) if recount else e.tokens for e in entries]
        tokens = REPLY_PRIMING + sum(counter.count_message(m) for m in prefix) + sum(verbatim)
        return WorkingWindow(
            messages=prefix + [e.message for e in entries],
            tokens=tokens,
            window_start=start,
            prefix_len=len(prefix),
            summary=summary,
            verbatim_tokens=verbatim,
        )

    def apply_compression(
        self,
        session_id: str,
        window: WorkingWindow,
        *,
        kept_from: int,
        summary: str | None,
        counter: TokenCounter,
    ) -> bool:
        """Move the window start and swap the summary, if nobody else compressed meanwhile.

        ``kept_from`` indexes ``window.messages``. System messages that fall out of the verbatim
        part are pinned so they stay in every later window. Returns False when the window
        changed under us (the caller simply drops its now-stale result).
        """
        skey = session_key(session_id)
        first_kept = max(kept_from, window.prefix_len)
        passed = window.messages[window.prefix_len : first_kept]
        old_pinned = [m for m in window.messages[: window.prefix_len] if parse_summary(m) is None]
        pinned = old_pinned + [m for m in passed if is_system(m)]
        new_start = window.transcript_index(first_kept)
        removed = sum(window.verbatim_tokens[: first_kept - window.prefix_len])
        old_prefix = sum(counter.count_message(m) for m in window.messages[: window.prefix_len])
        new_prefix = sum(counter.count_message(m) for m in pinned)
        if summary:
            new_prefix += counter.count_message(summary_message(summary))
        applied = False

        def transaction(pipe: redis.client.Pipeline) -> None:
            nonlocal applied
            current = pipe.hmget(skey, "window_start", "summary", "window_tokens")
            same = (
                int(text_of_reply(current[0], "0")) == window.window_start
                and (text_of_reply(current[1]) or None) == window.summary
            )
            pipe.multi()
            if not same:
                return
            tokens = int(text_of_reply(current[2], "0")) - removed - old_prefix + new_prefix
            pipe.hset(
                skey,
                mapping={
                    "window_start": new_start,
                    "summary": summary or "",
                    "pinned": json.dumps(pinned, ensure_ascii=False),
                    "window_tokens": tokens,
                },
            )
            pipe.hincrby(skey, "compressions", 1)
            applied = True

        self.redis.transaction(transaction, skey)
        return applied

    def transcript(self, session_id: str) -> list[Entry]:
        return [Entry.loads(r) for r in self.redis.lrange(transcript_key(session_id), 0, -1)]
