"""Domain metrics shared by all workers, kept in one Redis hash.

Workers increment fields with ``HINCRBY``/``HINCRBYFLOAT``; readers (client, CLI, gateway) turn
the hash into nested JSON. Field names are ``name`` or ``name:label`` (e.g.
``compressions:hybrid``), so a new label needs no schema change.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis

from tokenwindow.constants import LATENCY_KEY, METRICS_KEY, SESSIONS_INDEX_KEY

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, float("inf"))
"""Upper bounds (seconds) of the queue-to-first-token histogram, Prometheus style."""
ACTIVE_WINDOW_SECONDS = 15 * 60
"""A session is active if it had a turn in this many seconds."""

COUNTERS = (
    "turns_submitted",
    "turns_completed",
    "turns_failed",
    "turns_resent",
    "compressions",
    "tokens_saved",
    "crashes_prevented",
    "failsafe_used",
    "context_retries",
    "provider_calls",
    "context_fallbacks",
    "errors",
)


Count = tuple[str, str | None, int]
"""(counter name, label or None, amount)."""


class MetricsRecorder:
    """Moves shared counters; every call is one round trip, however many figures it carries.

    These are global keys, written apart from any session's scripts (they live in another
    Redis Cluster slot).
    """

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def incr(self, name: str, label: str | None = None, amount: int = 1) -> None:
        self.record([(name, label, amount)])

    def record(
        self,
        counts: Iterable[Count],
        *,
        first_token_seconds: float | None = None,
        active_session: str | None = None,
    ) -> None:
        """Counters, optionally a first-token latency and a session's last activity, at once."""
        pipe = self.redis.pipeline(transaction=False)
        self.queue(
            pipe, counts, first_token_seconds=first_token_seconds, active_session=active_session
        )
        pipe.execute()

    @staticmethod
    def queue(
        pipe: redis.client.Pipeline,
        counts: Iterable[Count],
        *,
        first_token_seconds: float | None = None,
        active_session: str | None = None,
    ) -> None:
        """Add the same writes to a caller's pipeline, to share its round trip."""
        for name, label, amount in counts:
            pipe.hincrby(METRICS_KEY, name, amount)
            if label is not None:
                pipe.hincrby(METRICS_KEY, f"{name}:{label}", amount)
        if first_token_seconds is not None:
            bucket = next(b for b in LATENCY_BUCKETS if first_token_seconds <= b)
            pipe.hincrby(LATENCY_KEY, f"le:{bucket}", 1)
            pipe.hincrby(LATENCY_KEY, "count", 1)
            pipe.hincrbyfloat(LATENCY_KEY, "sum", first_token_seconds)
        if active_session is not None:
            pipe.zadd(SESSIONS_INDEX_KEY, {active_session: time.time()})


def build_snapshot(
    counters: dict[str, str], latency: dict[str, str], active_sessions: int
) -> dict[str, Any]:
    """Nested JSON from the raw hashes: ``{"compressions": {"total": 3, "hybrid": 2}, ...}``."""
    snapshot: dict[str, Any] = {"active_sessions": active_sessions}
    for name in COUNTERS:
        snapshot[name] = {"total": 0}
    for field, value in counters.items():
        name, _, label = field.partition(":")
        group = snapshot.setdefault(name, {"total": 0})
        group[label or "total"] = int(value)
    cumulative = 0
    buckets: dict[str, int] = {}
    for bound in LATENCY_BUCKETS:
        cumulative += int(latency.get(f"le:{bound}", 0))
        buckets["+Inf" if bound == float("inf") else str(bound)] = cumulative
    snapshot["first_token_latency_seconds"] = {
        "buckets": buckets,
        "count": int(latency.get("count", 0)),
        "sum": float(latency.get("sum", 0.0)),
    }
    return snapshot


def active_since() -> float:
    return time.time() - ACTIVE_WINDOW_SECONDS
