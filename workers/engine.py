"""One asyncio event loop per worker process, where every reply of the process streams.

A streamed reply is seconds of waiting for a few microseconds of work per chunk. Celery's
``threads`` pool gives each turn a thread for its short synchronous steps (the ledger's
transitions); the stream itself runs here, on one loop shared by all of the process's turns,
with one HTTP connection pool and one publisher whose flushes carry every stream's events.
Memory per stream is a coroutine and a socket, not a process. The loop is uvloop's: its
sockets, timers and callbacks run in C, which cuts the worker's CPU per streamed chunk by about
a tenth (``python -m bench concurrency``).

That loop shares the interpreter's lock with Celery's consumer thread, which waits for it after
every socket read (several per task received). At Python's default switch interval (5 ms) a
busy loop makes each wait up to 5 ms and the consumer takes in only a few dozen tasks a
second, so a process that streams switches every ``SWITCH_INTERVAL_SECONDS`` instead. Shorter
is not better: at 0.2 ms, with the loop above the other threads (``serve_streams_first``), the
loop gave the lock up more often, and the p99 delivery delay at 500 streams was higher. For the
same lock, the process's cycle collector runs on the loop just after each flush
(``workers.collector``), never in the middle of a flush interval.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis.asyncio
import redis.exceptions
import uvloop

from tokenwindow.scripts import AsyncScript
from tokenwindow.settings import Settings, get_settings
from tokenwindow.topology import async_redis
from workers.collector import Collector
from workers.connections import POOL_WAIT_SECONDS, WORKER_POOL_CONNECTIONS, get_ledger
from workers.ledger import RENEW_SCRIPT, lua_source, renew_header, script_args
from workers.publisher import StreamPublisher
from workers.resp import direct_url
from workers.steps import STEPS

T = TypeVar("T")
SWITCH_INTERVAL_SECONDS = 0.001
LOOP_THREAD_NAME = "tw-streams"
"""The loop thread's name, also given to the kernel (Linux): ``top -H``, ``ps -L`` and
``/proc/PID/task/*/comm`` show it, so the CPU of the streams can be told from the task threads'
(``python -m bench concurrency`` reads it there)."""
PR_SET_NAME = 15


class Engine:
    """The loop, its thread, and what lives on it."""

    def __init__(self) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        STEPS.open()
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=LOOP_THREAD_NAME, daemon=True)
        self._thread.start()
        collector = Collector(self.loop)
        settings = get_settings()
        self.redis = _async_client(settings)
        self.publisher = StreamPublisher(
            self.redis,
            flush_ms=settings.stream_flush_ms,
            maxlen=settings.stream_maxlen,
            direct_url=direct_url(settings),
            after_flush=collector.collect,
        )
        collector.start()

        self._renew = AsyncScript(self.redis, lua_source(RENEW_SCRIPT))

    def _serve(self) -> None:
        name_native_thread(LOOP_THREAD_NAME)
        self.loop.run_forever()

    async def keep_lease(self, session_id: str, turn_id: str, owner: str) -> None:
        """Renew a turn's generation lease until cancelled; return if another task holds it."""
        limits = get_ledger().limits
        while True:
            await asyncio.sleep(limits.lease_seconds / 3)
            keys, args = script_args(session_id, limits, renew_header(turn_id, owner, limits))
            try:
                if not await self._renew(keys, args):
                    return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                continue  # the stream's own publishing will fail and retry the turn

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and wait for it from the calling (task) thread, out of
        the step slot."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        with STEPS.waiting():
            return future.result()


def name_native_thread(name: str) -> None:
    """Give the calling thread ``name`` in the kernel too (Linux; 15 bytes at most). ``prctl``
    comes from the C library already loaded in the process: no library search at start-up."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _async_client(settings: Settings) -> redis.asyncio.Redis:
    if settings.redis_cluster or settings.sentinels:
        return async_redis(
            settings, max_connections=WORKER_POOL_CONNECTIONS, health_check_interval=30
        )
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=WORKER_POOL_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        health_check_interval=30,
    )
    return redis.asyncio.Redis(connection_pool=pool)


@functools.cache
def get_engine() -> Engine:
    """Built on first use in each worker process (after any fork), never at import time."""
    return Engine()


def serve_streams_first(increment: int) -> Engine:
    """Start this process's engine, then run the calling thread ``increment`` nice lower.

    Called by a threads-pool worker's main thread before it takes in a task. Linux gives each
    thread its own nice value and a new thread its creator's, so the loop keeps the process's
    priority while Celery's consumer (the main thread) and every pool thread it starts later
    run lower: on a machine short of CPU, chunks of replies in flight stop waiting behind new
    turns' steps, which wait instead. Raising a nice value needs no privilege; on other systems
    it would lower the loop too, so there it is left alone.
    """
    engine = get_engine()
    if increment and sys.platform == "linux":
        os.nice(increment)
    return engine
