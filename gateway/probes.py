"""Probes of the broker: queue depths for admission control, worker pings for health.

Celery's Redis transport keeps each queue as a Redis list named after the queue, so its depth is
one ``LLEN``. A broker other than Redis has no such list; the depth check is then off.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import kombu.exceptions
import redis.asyncio
import redis.exceptions

from gateway.errors import ApiError
from tokenwindow.constants import QUEUE_COMPLETIONS, QUEUE_FAST
from tokenwindow.producer import TaskProducer
from tokenwindow.settings import Settings

ADMISSION_QUEUES = (QUEUE_FAST, QUEUE_COMPLETIONS)
"""Every turn passes through both: ingest on ``fast``, generation on ``completions``."""
RETRY_AFTER_SECONDS = 5
"""What an overloaded gateway asks callers to wait; turns take seconds, not minutes."""

PING_TIMEOUT_SECONDS = 1.0
"""How long to collect ping replies; a busy worker still answers from its main process."""

logger = logging.getLogger(__name__)


class QueueMonitor:
    """Reads queue depths from the broker."""

    def __init__(self, settings: Settings, store: redis.asyncio.Redis) -> None:
        self._own: redis.asyncio.Redis | None = None
        self.broker: redis.asyncio.Redis | None = store
        if settings.broker_url is None:
            return
        if urlsplit(settings.broker_url).scheme in ("redis", "rediss", "unix"):
            self._own = self.broker = redis.asyncio.Redis.from_url(settings.broker_url)
        else:
            self.broker = None
            logger.warning("the broker is not Redis: queue depth admission is off")

    async def depths(self) -> dict[str, int]:
        """Waiting messages per queue (empty if the broker is not Redis)."""
        if self.broker is None:
            return {}
        pipe = self.broker.pipeline(transaction=False)
        for queue in ADMISSION_QUEUES:
            pipe.llen(queue)
        lengths = await pipe.execute()
        return dict(zip(ADMISSION_QUEUES, (int(n) for n in lengths), strict=True))

    async def admit(self, limit: int) -> None:
        """Raise a 503 with ``Retry-After`` when any queue holds more than ``limit`` tasks."""
        full = {queue: depth for queue, depth in (await self.depths()).items() if depth > limit}
        if full:
            listed = ", ".join(f"{q} holds {n}" for q, n in full.items())
            raise ApiError(
                503,
                f"overloaded: {listed} waiting tasks (limit {limit}); retry later",
                type="overloaded_error",
                code="overloaded",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )

    async def close(self) -> None:
        if self._own is not None:
            await self._own.aclose()


class WorkerPinger:
    """Celery control pings over the broker, from a send-only app."""

    def __init__(self, settings: Settings) -> None:
        self._producer = TaskProducer.for_settings(settings)

    def ping(self) -> list[str]:
        """Names of the workers that answered (blocking: run it in a thread)."""
        try:
            replies = self._producer.app.control.ping(timeout=PING_TIMEOUT_SECONDS)
        except (OSError, kombu.exceptions.KombuError, redis.exceptions.RedisError):
            return []
        return sorted(name for reply in replies for name in reply)

    def close(self) -> None:
        self._producer.close()
