"""Celery configuration, built from the one settings object.

JSON only, explicit routes, late acks with redelivery on worker loss, prefetch 1 for the queues
that hold provider calls, and a broker visibility timeout longer than the longest task, so a
task is redelivered only when its worker is really gone.
"""

from __future__ import annotations

from tokenwindow.broker import use_for_redis_urls
from tokenwindow.constants import QUEUE_FAST, TASK_ROUTES
from tokenwindow.settings import get_settings
from tokenwindow.topology import celery_broker, celery_queues, celery_result_backend

use_for_redis_urls()
_settings = get_settings()
_broker = celery_broker(_settings)
_results = celery_result_backend(_settings)

broker_url = _broker.url
result_backend = _results.url
broker_connection_retry_on_startup = True
RESTORE_SWEEP_SECONDS = 5
"""How often a worker looks for unacked messages whose worker died (kombu's default is ~100 s)."""

broker_transport_options = {
    "visibility_timeout": _settings.longest_task_seconds + _settings.visibility_margin_seconds,
    "unacked_restore_interval": RESTORE_SWEEP_SECONDS,
    "unacked_restore_throttle": 1,
    # Sentinel's master name; publisher confirms with quorum queues (see tokenwindow.topology).
    **_broker.transport_options,
}
result_backend_transport_options = {"retry_policy": {"timeout": 5.0}, **_results.transport_options}
result_backend_thread_safe = True
"""One result backend (one Redis connection pool) per worker process. Celery's default builds a
backend per thread, and every task touches it at its end: a threads pool serving hundreds of
turns built hundreds of them, each a connection pool and about 1.5 ms of CPU under the lock the
streams share. redis-py's pool is thread-safe."""

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
result_expires = 3600
task_ignore_result = True
"""Turns and compressions keep no results: reply text lives only in the session's keys, so
deleting a session deletes all of it. Tasks whose result is their answer (token counts, bulk
transcripts) opt back in."""
task_store_errors_even_if_ignored = True
"""A task that crashed keeps its failure (type and message, no reply text) for whoever asks."""

task_queues = celery_queues(_settings)
task_default_queue = QUEUE_FAST
task_routes = {name: {"queue": queue} for name, queue in TASK_ROUTES.items()}
task_create_missing_queues = False

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_track_started = True
task_soft_time_limit = _settings.completion_soft_time_limit
task_time_limit = _settings.completion_time_limit
task_annotations = {
    name: {
        "soft_time_limit": _settings.summarization_soft_time_limit,
        "time_limit": _settings.summarization_time_limit,
    }
    for name, queue in TASK_ROUTES.items()
    if queue == "summarization"
}

worker_proc_alive_timeout = 60
"""Pool processes load tokenizers and litellm at start (seconds on a busy machine)."""
worker_send_task_events = True
worker_consumer = "workers.consumer:Consumer"
"""Task events for Flower go out in batches, at most every 0.1 s (``workers.consumer``)."""
task_send_sent_event = True
worker_hijack_root_logger = False
worker_cancel_long_running_tasks_on_connection_loss = True
