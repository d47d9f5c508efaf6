"""Compression tasks: a session's working window, and standalone transcripts in bulk.

``compress_session`` is retried with backoff and jitter on transient summarizer errors only; when
retries run out, or the soft time limit hits, it falls back to the extractive summarizer and then
the failsafe, so a chained completion always follows a window that fits. It never raises into the
chain: a broken compression must not strand the turn behind it.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded

from tokenwindow.bulk.jobs import error_record
from tokenwindow.constants import (
    TASK_COMPLETE_TURN,
    TASK_COMPRESS_SESSION,
    TASK_COMPRESS_TRANSCRIPT,
)
from tokenwindow.counting import counter_for_encoding
from tokenwindow.errors import TokenWindowError
from tokenwindow.events import EventType
from tokenwindow.metrics import Count
from tokenwindow.models import get_registry
from tokenwindow.settings import get_settings
from tokenwindow.window import window_for
from workers import bulk
from workers.app import app
from workers.backoff import backoff
from workers.compressor import Compression, report
from workers.connections import get_events, get_metrics, get_store

log = logging.getLogger(__name__)


@app.task(name=TASK_COMPRESS_SESSION, bind=True, acks_late=True, ignore_result=True)
def compress_session(
    self: Task,
    *,
    session_id: str,
    turn_id: str,
    model: str,
    strategy: str,
    reason: str,
    then: dict[str, Any] | None = None,
    tools_tokens: int = 0,
) -> None:
    """Compress the session's working window to the target share and apply it atomically.

    ``then`` (the hard path) is the turn's ``complete_turn`` arguments: it is sent however this
    compression ends (applied, stale, failed, past its time limit), but not while it retries,
    so the turn always generates, on a failsafed window if need be, or fails with an event.
    """
    handing_on = then is not None
    try:
        _compress_session(
            self,
            session_id=session_id,
            turn_id=turn_id,
            model=model,
            strategy=strategy,
            reason=reason,
            tools_tokens=tools_tokens,
        )
    except Retry:
        handing_on = False
        raise
    except Exception:
        log.exception("compression failed", extra={"fields": {"session_id": session_id}})
        if then is None:
            raise
    finally:
        if handing_on:
            app.send_task(TASK_COMPLETE_TURN, kwargs=then)


def _compress_session(
    self: Task,
    *,
    session_id: str,
    turn_id: str,
    model: str,
    strategy: str,
    reason: str,
    tools_tokens: int,
) -> None:
    settings, store, events = get_settings(), get_store(), get_events()
    spec = get_registry().get(model)
    counter = counter_for_encoding(spec.encoding, spec.exact)
    budget = window_for(spec, settings, tools_tokens=tools_tokens).target
    working = store.working_window(session_id, counter)
    if working.tokens <= budget:
        return
    if self.request.retries == 0:
        events.publish(
            session_id,
            turn_id,
            EventType.COMPRESSION_STARTED,
            strategy=strategy,
            reason=reason,
            tokens_before=working.tokens,
            budget=budget,
        )
    compression = Compression(
        working.messages,
        strategy=strategy,
        budget=budget,
        counter=counter,
        provider=spec.provider,
        settings=settings,
    )
    try:
        result = compression.attempt()
        error = compression.provider_error
        retries_left = self.request.retries < settings.max_retries
        if result.error is not None and error is not None and error.retryable and retries_left:
            raise self.retry(countdown=backoff(self.request.retries, error.retry_after))
        if result.error is not None:
            events.publish(
                session_id,
                turn_id,
                EventType.COMPRESSION_FAILED,
                strategy=strategy,
                code=error.code if error else "summarizer_failed",
                message="summarizer failed; falling back",
            )
            get_metrics().incr("errors", error.code if error else "summarizer_failed")
        result = compression.fallback(result)
    except SoftTimeLimitExceeded:
        events.publish(
            session_id,
            turn_id,
            EventType.COMPRESSION_FAILED,
            strategy=strategy,
            code="timeout",
            message="compression ran past its soft time limit",
        )
        result = compression.failsafe()
    applied = store.apply_compression(
        session_id, working, kept_from=result.kept_from, summary=result.summary, counter=counter
    )
    if applied:
        counts: list[Count] = [
            ("compressions", result.strategy, 1),
            ("tokens_saved", None, max(result.tokens_saved, 0)),
        ]
        if result.failsafe:
            counts.append(("failsafe_used", None, 1))
        get_metrics().record(counts)
    events.publish(
        session_id,
        turn_id,
        EventType.COMPRESSION_COMPLETED,
        reason=reason,
        applied=applied,
        **report(result),
    )


@app.task(name=TASK_COMPRESS_TRANSCRIPT, bind=True, acks_late=True, ignore_result=False)
def compress_transcript(
    self: Task,
    *,
    transcript_id: str,
    messages: list[dict[str, Any]],
    model: str,
    strategy: str,
    budget: int | None = None,
    ratio: float | None = None,
    summarizer: str | None = None,
) -> dict[str, Any]:
    """Compress one standalone transcript (bulk mode); errors are results, not exceptions.

    ``summarizer`` is ``extractive`` or a model name; unset keeps the worker's configured one.
    """
    settings = get_settings()
    try:
        compression = bulk.prepare(
            messages,
            model=model,
            strategy=strategy,
            budget=budget,
            ratio=ratio,
            summarizer=summarizer,
            settings=settings,
        )
    except TokenWindowError as exc:
        return error_record(transcript_id, exc.code, exc.message)
    try:
        result = compression.attempt()
        error = bulk.transient_error(compression, result)
        if error is not None and self.request.retries < settings.max_retries:
            raise self.retry(countdown=backoff(self.request.retries, error.retry_after))
        result = compression.fallback(result)
    except SoftTimeLimitExceeded:
        result = compression.failsafe()
    return bulk.transcript_record(transcript_id, result)
