"""Redis key names, task names and queues: the wire contract, documented where defined.

Consumers in other languages read these keys directly, so every name here is part of the public
API (see the README, "Events and keys").
"""

from __future__ import annotations

import re

KEY_PREFIX = "tw"

SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
"""Session ids become part of key and channel names: no glob characters, separators or spaces."""
TURN_ID_PATTERN = SESSION_ID_PATTERN
STREAM_ID_PATTERN = re.compile(r"^\d{1,20}(-\d{1,20})?$")
"""A Redis Stream entry id (``ms-seq``, or ``ms`` alone), where a subscriber resumes; ``0``
replays everything kept."""


def _session_tag(session_id: str) -> str:
    """Every per-session key starts ``tw:{SESSION}:``: the braces are a Redis Cluster hash tag,
    so all of a session's keys live in one slot and one Lua script may touch them together."""
    return f"{KEY_PREFIX}:{{{session_id}}}"


def session_key(session_id: str) -> str:
    """Hash: the session's metadata (model, counts, running summary, window start)."""
    return f"{_session_tag(session_id)}:session"


def transcript_key(session_id: str) -> str:
    """List: every message ever ingested, as JSON entries; compression never trims it."""
    return f"{_session_tag(session_id)}:transcript"


def message_keys_key(session_id: str) -> str:
    """List: the content digest of every transcript message, in order. A client that resends
    or trims its history is recognised by where its messages overlap the end of this list."""
    return f"{_session_tag(session_id)}:digests"


def turns_key(session_id: str) -> str:
    """Hash: the ledger of the session's turns. Field ``TURN`` holds the turn's record (JSON:
    state, attempt, lease owner and expiry, retries); ``TURN:seq`` its event counter;
    ``TURN:text`` the reply text already published; ``TURN:request`` a live turn's task request
    (the hand-on sends a parked turn's, the recovery sweep resends a lost one)."""
    return f"{_session_tag(session_id)}:turns"


def turn_order_key(session_id: str) -> str:
    """Sorted set: turns waiting for or holding the session, by arrival (per-session FIFO)."""
    return f"{_session_tag(session_id)}:order"


def tool_calls_key(session_id: str) -> str:
    """Set: ids of every tool call the session's assistant messages made (answers must match)."""
    return f"{_session_tag(session_id)}:calls"


def events_stream_key(session_id: str) -> str:
    """Stream: every event of the session, capped, for replay by entry id."""
    return f"{_session_tag(session_id)}:events"


def events_channel(session_id: str) -> str:
    """Pub/sub channel: the same events, live."""
    return f"{_session_tag(session_id)}:channel"


def session_keys(session_id: str) -> list[str]:
    """Every key a session owns: deleting these deletes all of it."""
    return [
        session_key(session_id),
        transcript_key(session_id),
        message_keys_key(session_id),
        turns_key(session_id),
        turn_order_key(session_id),
        tool_calls_key(session_id),
        events_stream_key(session_id),
    ]


SESSIONS_INDEX_KEY = f"{KEY_PREFIX}:sessions"
"""Sorted set: session id -> last activity (unix seconds); drives listing and expiry."""
METRICS_KEY = f"{KEY_PREFIX}:metrics"
"""Hash of counters shared by all workers (see ``workers.metrics``)."""
RECOVERY_KEY = f"{KEY_PREFIX}:recovery"
"""Sorted set: session id -> when the recovery sweep next looks at the head of its turn queue.
Every ingest adds its session (keeping the earlier time); the sweep moves or removes it."""
LATENCY_KEY = f"{KEY_PREFIX}:latency"
"""Hash of histogram buckets for queue-to-first-token latency."""


def doorbell_key(client_id: str) -> str:
    """Stream of one entry: a client's subscriptions share one blocking read that names it, and
    a new subscription adds to it to end that read at once (``tokenwindow.fanin``)."""
    return f"{KEY_PREFIX}:doorbell:{client_id}"


TASK_INGEST_TURN = "tokenwindow.ingest_turn"
TASK_COMPLETE_TURN = "tokenwindow.complete_turn"
TASK_COMPRESS_SESSION = "tokenwindow.compress_session"
TASK_COMPRESS_TRANSCRIPT = "tokenwindow.compress_transcript"
TASK_COUNT_TOKENS = "tokenwindow.count_tokens"

QUEUE_FAST = "fast"
"""Cheap CPU work: token counting."""
QUEUE_COMPLETIONS = "completions"
"""Turns: ingest and the provider calls that stream replies; prefetch 1."""
QUEUE_SUMMARIZATION = "summarization"
"""Compression of session windows and bulk transcripts; may call a provider; prefetch 1."""
QUEUES = (QUEUE_FAST, QUEUE_COMPLETIONS, QUEUE_SUMMARIZATION)

TASK_ROUTES: dict[str, str] = {
    TASK_COUNT_TOKENS: QUEUE_FAST,
    # Ingest generates the reply itself when no compression must come first, so it lives with
    # the provider calls: one broker hop per turn instead of two.
    TASK_INGEST_TURN: QUEUE_COMPLETIONS,
    TASK_COMPLETE_TURN: QUEUE_COMPLETIONS,
    TASK_COMPRESS_SESSION: QUEUE_SUMMARIZATION,
    TASK_COMPRESS_TRANSCRIPT: QUEUE_SUMMARIZATION,
}
