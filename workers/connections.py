"""Per-process Redis connections and the stores built on them.

Built on first use in each worker process (after fork), never at import time. The clients are
thread-safe connection pools, shared by every task thread of a ``threads`` pool.
"""

from __future__ import annotations

import functools

import redis

from tokenwindow.eventlog import EventLog
from tokenwindow.metrics import MetricsRecorder
from tokenwindow.settings import get_settings
from tokenwindow.topology import sync_redis
from workers.ledger import Ledger, Limits
from workers.session_store import SessionStore

STALE_TURN_MARGIN_SECONDS = 120
"""A head of queue with no transition for the longest task plus this is evicted; a generating
head, this long after its lease expired."""


WORKER_POOL_CONNECTIONS = 256
"""Connections one worker process may open; beyond that a task thread waits for a free one
(a ``threads`` pool runs hundreds of turns, each holding a connection only for a step). Cluster
and Sentinel clients keep their own pools, capped at this per node."""
POOL_WAIT_SECONDS = 20


@functools.cache
def get_redis() -> redis.Redis:
    settings = get_settings()
    if settings.redis_cluster or settings.sentinels:
        return sync_redis(
            settings, max_connections=WORKER_POOL_CONNECTIONS, health_check_interval=30
        )
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=WORKER_POOL_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)


@functools.cache
def get_store() -> SessionStore:
    return SessionStore(get_redis())


@functools.cache
def get_ledger() -> Ledger:
    settings = get_settings()
    limits = Limits(
        ttl_seconds=settings.session_ttl_seconds,
        maxlen=settings.stream_maxlen,
        lease_seconds=settings.lease_seconds,
        stale_seconds=settings.longest_task_seconds + STALE_TURN_MARGIN_SECONDS,
        lease_grace_seconds=STALE_TURN_MARGIN_SECONDS,
    )
    return Ledger(get_redis(), limits)


@functools.cache
def get_events() -> EventLog:
    settings = get_settings()
    return EventLog(
        get_redis(), maxlen=settings.stream_maxlen, ttl_seconds=settings.session_ttl_seconds
    )


@functools.cache
def get_metrics() -> MetricsRecorder:
    return MetricsRecorder(get_redis())
