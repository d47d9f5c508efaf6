"""Worker lifecycle: logging, Sentry and tokenizer warm-up on start; the recovery sweep beside
a turn worker; a log line per task.

Everything here runs from Celery signals, so importing the app never touches the network,
Sentry or the tokenizer files.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from typing import Any

from celery import signals
from celery.concurrency.thread import TaskPool as ThreadTaskPool

from tokenwindow.constants import QUEUE_COMPLETIONS, QUEUE_SUMMARIZATION, TASK_INGEST_TURN
from tokenwindow.counting import counter_for_encoding
from tokenwindow.errors import TokenWindowError
from tokenwindow.models import get_registry
from tokenwindow.settings import get_settings
from workers.connections import get_ledger, get_metrics, get_redis
from workers.engine import serve_streams_first
from workers.llm import load_litellm
from workers.logs import configure_logging, safe_fields
from workers.recovery import RecoverySweep, SweepThread
from workers.sentry import init_sentry

log = logging.getLogger("tokenwindow.tasks")
WARM_ENCODINGS = ("o200k_base", "cl100k_base")
PROVIDER_QUEUES = frozenset({QUEUE_COMPLETIONS, QUEUE_SUMMARIZATION})
"""Queues whose tasks call providers (through litellm)."""
_started: dict[str, float] = {}
_sweeps: list[SweepThread] = []


def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """The worker's ``-l`` level (the Procfile passes ``LOG_LEVEL`` to it) in logfmt."""
    settings = get_settings()
    configure_logging(loglevel or settings.log_level, log_prompts=settings.log_prompts)


def _worker_init(sender: Any = None, **_: Any) -> None:
    if init_sentry(get_settings()):
        log.info("sentry enabled")
    queues = consumed_queues(sender)
    _warm_up(calls_providers=bool(queues & PROVIDER_QUEUES))
    if QUEUE_COMPLETIONS in queues:
        _sweeps.append(_recovery_sweep(sender.app))


def _recovery_sweep(app: Any) -> SweepThread:
    """Where turns run, lost turn tasks are looked for: every third of a lease, at most 10 s."""
    interval = min(max(get_settings().lease_seconds / 3, 1.0), 10.0)

    def send(kwargs: dict[str, Any]) -> None:
        app.send_task(TASK_INGEST_TURN, kwargs=kwargs)

    sweep = RecoverySweep(get_redis(), get_ledger(), get_metrics(), send)
    return SweepThread(sweep, interval)


def _worker_ready(sender: Any = None, **_: Any) -> None:
    """Started once the pool is up: a prefork pool forks its children without this thread.
    A threads pool serving turns streams them on this process's loop: it starts first, at the
    process's priority (``serve_streams_first``)."""
    worker = sender.controller
    if QUEUE_COMPLETIONS in consumed_queues(worker) and isinstance(worker.pool, ThreadTaskPool):
        serve_streams_first(get_settings().intake_nice)
    for sweep in _sweeps:
        sweep.start()


def _worker_shutdown(**_: Any) -> None:
    for sweep in _sweeps:
        sweep.stop()


def consumed_queues(worker: Any) -> set[str]:
    """The queues a worker consumes: its ``-Q`` list, else every declared queue."""
    queues = worker.app.amqp.queues
    return set(queues.consume_from or queues)


def _warm_up(*, calls_providers: bool) -> None:
    """Load vocabularies (and litellm, where tasks call providers) in the worker's main
    process, before any task waits on them.

    Both come from disk (no network): litellm's import alone takes seconds, which would
    otherwise land on the first turn each pool process serves, and about 180 MB that a worker
    that only counts tokens never needs. A prefork pool's children fork from this process, so
    they start with both loaded and share those pages with it; a threads pool's tasks find them
    loaded, instead of hundreds of threads importing at once.
    """
    for name in WARM_ENCODINGS:
        counter_for_encoding(name).count_text("warm")
    if calls_providers:
        load_litellm()
    with contextlib.suppress(TokenWindowError):
        get_registry()  # a broken models file fails each turn clearly, not the worker's start
    gc.freeze()


def _task_started(task_id: str, task: Any, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    _started[task_id] = time.monotonic()
    log.info(
        "task started",
        extra={"fields": {"task": task.name, "task_id": task_id, **safe_fields(kwargs)}},
    )


def _task_finished(
    task_id: str,
    task: Any,
    state: str | None = None,
    kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    started = _started.pop(task_id, None)
    elapsed = f"{time.monotonic() - started:.3f}" if started is not None else ""
    log.info(
        "task finished",
        extra={
            "fields": {
                "task": task.name,
                "task_id": task_id,
                "state": state,
                "seconds": elapsed,
                **safe_fields(kwargs),
            }
        },
    )


def _task_retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    fields = {
        "task": getattr(request, "task", ""),
        "task_id": getattr(request, "id", ""),
        "reason": type(reason).__name__,
        **safe_fields(getattr(request, "kwargs", None)),
    }
    log.warning("task retry", extra={"fields": fields})


# Connected by call rather than decorator: Celery is untyped, and a decorator from it would
# make these functions untyped too.
signals.setup_logging.connect(_setup_logging)
signals.worker_init.connect(_worker_init)
signals.worker_ready.connect(_worker_ready)
signals.worker_shutdown.connect(_worker_shutdown)
signals.task_prerun.connect(_task_started)
signals.task_postrun.connect(_task_finished)
signals.task_retry.connect(_task_retry)
