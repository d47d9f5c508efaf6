"""Per-process Redis connections and the stores built on them.

Built on first use in each worker process (after fork), never at import time.
"""

from __future__ import annotations

import functools

import redis

from tokenwindow.eventlog import EventLog
from tokenwindow.metrics import MetricsRecorder
from tokenwindow.settings import get_settings
from tokenwindow.topology import sync_redis
from workers.session_store import SessionStore

STALE_TURN_MARGIN_SECONDS = 120
"""A turn holding its session with no heartbeat for the longest task plus this is evicted."""


@functools.cache
def get_redis() -> redis.Redis:
    return sync_redis(get_settings(), health_check_interval=30)


@functools.cache
def get_store() -> SessionStore:
    settings = get_settings()
    return SessionStore(
        get_redis(),
        ttl_seconds=settings.session_ttl_seconds,
        stale_after=settings.longest_task_seconds + STALE_TURN_MARGIN_SECONDS,
    )


@functools.cache
def get_events() -> EventLog:
    settings = get_settings()
    return EventLog(
        get_redis(), maxlen=settings.stream_maxlen, ttl_seconds=settings.session_ttl_seconds
    )


@functools.cache
def get_metrics() -> MetricsRecorder:
    return MetricsRecorder(get_redis())
