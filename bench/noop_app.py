"""A bare Celery app with one task that does nothing: the floor any task round trip pays.

Same broker and result backend as the service (``REDIS_URL``), JSON, Celery's defaults for
everything else, so the difference from a turn is our own work and not the transport.
Started by ``bench.stack`` as ``celery -A bench.noop_app worker -Q bench_noop``.
"""

from __future__ import annotations

import time

from celery import Celery

from tokenwindow.settings import get_settings

NOOP_QUEUE = "bench_noop"
NOOP_TASK = "bench.noop"
TIMEOUT_SECONDS = 60.0
WARM_UP_TRIPS = 5


def create_app(redis_url: str) -> Celery:
    """The worker and the bench's producer build the same app from the same URL."""
    noop_app = Celery("bench-noop", broker=redis_url, backend=redis_url, set_as_current=False)
    noop_app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=NOOP_QUEUE,
        broker_connection_retry_on_startup=True,
    )
    noop_app.task(name=NOOP_TASK)(noop)
    return noop_app


def noop() -> None:
    """Return at once: the round trip is all broker, worker and result backend."""


class RoundTrips:
    """``with RoundTrips(url) as trips:`` then ``trips.time()`` per round trip, one connection."""

    def __init__(self, redis_url: str, *, warm_up: int = WARM_UP_TRIPS) -> None:
        self._producer = create_app(redis_url)
        self._warm_up = warm_up

    def __enter__(self) -> RoundTrips:
        for _ in range(self._warm_up):  # connections, the result-backend subscription
            self.time()
        return self

    def __exit__(self, *_: object) -> None:
        self._producer.close()

    def time(self) -> float:
        """Seconds of one ``send_task`` + ``result.get()``."""
        start = time.perf_counter()
        self._producer.send_task(NOOP_TASK, queue=NOOP_QUEUE).get(timeout=TIMEOUT_SECONDS)
        return time.perf_counter() - start


def round_trips(redis_url: str, n: int, *, warm_up: int = WARM_UP_TRIPS) -> list[float]:
    """Seconds of ``n`` sequential round trips, after ``warm_up`` more."""
    with RoundTrips(redis_url, warm_up=warm_up) as trips:
        return [trips.time() for _ in range(n)]


app = create_app(get_settings().redis_url)
