"""One asyncio event loop per worker process, where every reply of the process streams.

A streamed reply is seconds of waiting for a few microseconds of work per chunk. Celery's
``threads`` pool gives each turn a thread for its short synchronous steps (the ledger's
transitions); the stream itself runs here, on one loop shared by all of the process's turns,
with one HTTP connection pool and one publisher whose flushes carry every stream's events.
Memory per stream is a coroutine and a socket, not a process.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis.asyncio

from tokenwindow.settings import get_settings
from workers.publisher import StreamPublisher

T = TypeVar("T")


class Engine:
    """The loop, its thread, and what lives on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="streams", daemon=True)
        self._thread.start()
        settings = get_settings()
        self.redis = redis.asyncio.Redis.from_url(settings.redis_url, health_check_interval=30)
        self.publisher = StreamPublisher(
            self.redis,
            flush_ms=settings.stream_flush_ms,
            maxlen=settings.stream_maxlen,
            ttl_seconds=settings.session_ttl_seconds,
        )

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for it from the calling (task) thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


@functools.cache
def get_engine() -> Engine:
    """Built on first use in each worker process (after any fork), never at import time."""
    return Engine()
