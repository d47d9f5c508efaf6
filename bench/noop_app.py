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


def round_trips(redis_url: str, n: int, *, warm_up: int = WARM_UP_TRIPS) -> list[float]:
    """Seconds of ``n`` sequential ``send_task`` + ``result.get()``, after ``warm_up`` more."""
    producer = create_app(redis_url)
    try:
        for _ in range(warm_up):  # connections, the result-backend subscription
            producer.send_task(NOOP_TASK, queue=NOOP_QUEUE).get(timeout=TIMEOUT_SECONDS)
        times = []
        for _ in range(n):
            start = time.perf_counter()
            producer.send_task(NOOP_TASK, queue=NOOP_QUEUE).get(timeout=TIMEOUT_SECONDS)
            times.append(time.perf_counter() - start)
        return times
    finally:
        producer.close()


app = create_app(get_settings().redis_url)
