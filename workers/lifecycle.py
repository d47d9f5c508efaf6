"""Worker lifecycle: logging, Sentry and tokenizer warm-up on start; a log line per task.

Everything here runs from Celery signals, so importing the app never touches the network,
Sentry or the tokenizer files.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from celery import signals

from tokenwindow.counting import counter_for_encoding
from tokenwindow.errors import TokenWindowError
from tokenwindow.models import get_registry
from tokenwindow.settings import get_settings
from workers.llm import load_litellm
from workers.logs import configure_logging, safe_fields
from workers.sentry import init_sentry

log = logging.getLogger("tokenwindow.tasks")
WARM_ENCODINGS = ("o200k_base", "cl100k_base")
_started: dict[str, float] = {}


def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """The worker's ``-l`` level (the Procfile passes ``LOG_LEVEL`` to it) in logfmt."""
    settings = get_settings()
    configure_logging(loglevel or settings.log_level, log_prompts=settings.log_prompts)


def _worker_init(sender: Any = None, **_: Any) -> None:
    if init_sentry(get_settings()):
        log.info("sentry enabled")
    if not _forks(sender):
        # A threads (or solo) pool runs tasks in this process, and no child init will come:
        # warm up before the first task, not in hundreds of task threads at once.
        _warm_up()


def _forks(worker: Any) -> bool:
    """True when the worker's pool runs tasks in forked children (which warm themselves)."""
    from celery import concurrency
    from celery.concurrency.prefork import TaskPool

    pool = concurrency.get_implementation(getattr(worker, "pool_cls", None) or "prefork")
    return isinstance(pool, type) and issubclass(pool, TaskPool)


def _warm_up(**_: Any) -> None:
    """Load vocabularies and litellm once per child, before the first task waits on them.

    Both come from disk (no network): litellm's import alone takes seconds, which would
    otherwise land on the first turn each pool process serves.
    """
    for name in WARM_ENCODINGS:
        counter_for_encoding(name).count_text("warm")
    load_litellm()
    with contextlib.suppress(TokenWindowError):
        get_registry()  # a broken models file fails each turn clearly, not the worker's start


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
signals.worker_process_init.connect(_warm_up)
signals.task_prerun.connect(_task_started)
signals.task_postrun.connect(_task_finished)
signals.task_retry.connect(_task_retry)
