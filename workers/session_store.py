"""Sessions in Redis: the raw transcript and the working window (turns: ``workers.ledger``).

The transcript is append-only: compression never removes a message from it. The working window
is derived: pinned system messages + the running summary + ``transcript[window_start:]``.
Compression changes only (summary, window_start, pinned), with a compare-and-set so a summary
computed from an old window is never applied over a newer compression.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import redis

from strategies.summary import parse_summary, summary_message
from tokenwindow.constants import session_key, transcript_key
from tokenwindow.counting import REPLY_PRIMING, TokenCounter
from tokenwindow.messages import Message, is_system
from tokenwindow.sessions import Entry, decode_hash

APPLY_COMPRESSION_LUA = """
-- KEYS: session hash. ARGV: expected window_start, expected summary, new window_start,
-- new summary, new pinned JSON, tokens removed from the window (may be negative)
local current = redis.call('HMGET', KEYS[1], 'window_start', 'summary')
if (current[1] or '0') ~= ARGV[1] or (current[2] or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'window_start', ARGV[3], 'summary', ARGV[4], 'pinned', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'window_tokens', -tonumber(ARGV[6]))
redis.call('HINCRBY', KEYS[1], 'compressions', 1)
return 1
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
    indices: list[int] = field(default_factory=list)
    """The transcript index of each verbatim message (abandoned branches are skipped)."""

    def transcript_index(self, window_index: int) -> int:
        """Map an index in ``messages`` (past the prefix) back to the transcript."""
        position = max(window_index - self.prefix_len, 0)
        if position < len(self.indices):
            return self.indices[position]
        return (self.indices[-1] + 1) if self.indices else self.window_start


def window_from(
    fields: dict[str, str], entries: list[Entry], counter: TokenCounter
) -> WorkingWindow:
    """The working window from the session's fields and its transcript from ``window_start``,
    without abandoned branches; recounted only if the session was counted with another
    encoding."""
    start = int(fields.get("window_start") or 0)
    branches = json.loads(fields.get("branches") or "[]")
    kept = [
        (start + i, e)
        for i, e in enumerate(entries)
        if not any(low <= start + i < high for low, high in branches)
    ]
    indices, entries = [i for i, _ in kept], [e for _, e in kept]
    summary = fields.get("summary") or None
    pinned: list[Message] = json.loads(fields.get("pinned") or "[]")
    prefix = pinned + ([summary_message(summary)] if summary else [])
    recount = (fields.get("encoding") or counter.encoding_name) != counter.encoding_name
    verbatim = [counter.count_message(e.message) if recount else e.tokens for e in entries]
    tokens = REPLY_PRIMING + sum(counter.count_message(m) for m in prefix) + sum(verbatim)
    return WorkingWindow(
        messages=prefix + [e.message for e in entries],
        tokens=tokens,
        window_start=start,
        prefix_len=len(prefix),
        summary=summary,
        verbatim_tokens=verbatim,
        indices=indices,
    )


class SessionStore:
    """Session reads and compression writes for the workers, over one synchronous client."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._apply = client.register_script(APPLY_COMPRESSION_LUA)

    def meta(self, session_id: str) -> dict[str, str]:
        return decode_hash(self.redis.hgetall(session_key(session_id)))

    def working_window(self, session_id: str, counter: TokenCounter) -> WorkingWindow:
        meta = self.meta(session_id)
        start = int(meta.get("window_start") or 0)
        raw = self.redis.lrange(transcript_key(session_id), start, -1)
        return window_from(meta, [Entry.loads(r) for r in raw], counter)

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
        first_kept = max(kept_from, window.prefix_len)
        passed = window.messages[window.prefix_len : first_kept]
        old_pinned = [m for m in window.messages[: window.prefix_len] if parse_summary(m) is None]
        pinned = old_pinned + [m for m in passed if is_system(m)]
        removed = sum(window.verbatim_tokens[: first_kept - window.prefix_len])
        old_prefix = sum(counter.count_message(m) for m in window.messages[: window.prefix_len])
        new_prefix = sum(counter.count_message(m) for m in pinned)
        if summary:
            new_prefix += counter.count_message(summary_message(summary))
        args: list[str | int] = [
            window.window_start,
            window.summary or "",
            window.transcript_index(first_kept),
            summary or "",
            json.dumps(pinned, ensure_ascii=False),
            removed + old_prefix - new_prefix,
        ]
        return bool(self._apply(keys=[session_key(session_id)], args=args))

    def transcript(self, session_id: str) -> list[Entry]:
        return [Entry.loads(r) for r in self.redis.lrange(transcript_key(session_id), 0, -1)]
