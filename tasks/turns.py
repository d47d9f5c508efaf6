"""The turn pipeline: ingest a turn, compress if needed, stream the reply.

``ingest_turn`` (fast queue) takes the session in arrival order, appends the new messages once
per turn id and decides: under the soft threshold it starts the completion; between soft and
hard it also enqueues a background compression; over hard it chains compression before the
completion. ``complete_turn`` (completions queue) never sends more than the usable window,
streams deltas as events, appends the reply and hands the session to the next turn.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import redis.exceptions
from celery import Task, chain
from celery.exceptions import SoftTimeLimitExceeded

from tasks.compression import compress_session
from tasks.retry import backoff, wait_for_session
from tokenwindow.constants import (
    SESSION_ID_PATTERN,
    TASK_COMPLETE_TURN,
    TASK_INGEST_TURN,
    TURN_ID_PATTERN,
)
from tokenwindow.counting import counter_for
from tokenwindow.errors import (
    ContextWindowExceededError,
    InvalidInputError,
    ProviderError,
    TokenWindowError,
)
from tokenwindow.events import EventType
from tokenwindow.messages import check_tool_results
from tokenwindow.models import ModelSpec, get_registry
from tokenwindow.protocol import TurnRequest
from tokenwindow.settings import get_settings
from tokenwindow.window import Pressure, window_for
from workers.app import app
from workers.compressor import FAILSAFE, Compression
from workers.connections import get_events, get_metrics, get_store
from workers.llm import stream_completion

log = logging.getLogger(__name__)

DONE_STATES = frozenset(("completed", "failed"))
OVERFLOW_MARGIN_SCALE = 3.0
"""After a provider context-length error, the safety margin is this many times larger."""


REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
REDIS_POLL_SECONDS = 1.0


@contextlib.contextmanager
def _redis_outage(task: Task, limit: float) -> Iterator[None]:
    """If Redis drops out mid-task, wait for it to answer again, then run the task again.

    Session state and (usually) the broker live in Redis, so a failure here would lose the turn
    and leave its session blocked. Every step is idempotent per turn id, and a re-run completion
    resumes by prefix, so running again is safe.
    """
    try:
        yield
    except REDIS_ERRORS as exc:
        log.warning("redis unreachable; waiting", extra={"fields": {"error": type(exc).__name__}})
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                get_store().redis.ping()
                break
            except REDIS_ERRORS:
                time.sleep(REDIS_POLL_SECONDS)
        raise task.retry(countdown=REDIS_POLL_SECONDS) from None


def _turn_failed(session_id: str, turn_id: str, error: TokenWindowError) -> dict[str, Any]:
    """Record a failed turn everywhere a consumer might look, and free the session."""
    store = get_store()
    store.set_turn_state(session_id, turn_id, status="failed", code=error.code)
    get_events().publish(session_id, turn_id, EventType.TURN_FAILED, **error.to_dict())
    get_metrics().incr("turns_failed")
    get_metrics().incr("errors", error.code)
    store.release_turn(session_id, turn_id)
    return {"status": "failed", "session_id": session_id, "turn_id": turn_id, **error.to_dict()}


def _reject(kwargs: dict[str, Any], error: InvalidInputError) -> dict[str, Any]:
    """Bad task arguments: report on the session if it is identifiable, lose nothing else."""
    session_id, turn_id = kwargs.get("session_id"), kwargs.get("turn_id")
    if (
        isinstance(session_id, str)
        and isinstance(turn_id, str)
        and SESSION_ID_PATTERN.fullmatch(session_id)
        and TURN_ID_PATTERN.fullmatch(turn_id)
    ):
        return _turn_failed(session_id, turn_id, error)
    get_metrics().incr("errors", error.code)
    return {"status": "failed", **error.to_dict()}


@app.task(name=TASK_INGEST_TURN, bind=True, max_retries=None, acks_late=True)
def ingest_turn(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Append a turn's new messages (once per turn id) and start its completion."""
    with _redis_outage(self, get_settings().completion_soft_time_limit):
        return _ingest_turn(self, *args, **kwargs)


def _ingest_turn(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        if args:
            raise InvalidInputError(
                f"turn: {TASK_INGEST_TURN} takes keyword arguments only, got {len(args)} positional"
            )
        turn = TurnRequest.parse(kwargs)
    except InvalidInputError as exc:
        return _reject(kwargs, exc)
    store, settings = get_store(), get_settings()
    sid, tid = turn.session_id, turn.turn_id
    if not store.acquire_turn(sid, tid):
        raise self.retry(countdown=wait_for_session(self.request.retries))
    state = store.turn_state(sid, tid)
    if state.get("status") in DONE_STATES or state.get("dispatched"):
        return {"status": state.get("status", "dispatched"), "session_id": sid, "turn_id": tid}
    try:
        spec = get_registry().get(turn.model)
    except TokenWindowError as exc:
        return _turn_failed(sid, tid, exc)
    counter = counter_for(spec)
    strategy = str(turn.strategy or settings.default_strategy)
    new = store.new_suffix(store.meta(sid), turn.typed_messages)
    if not state.get("ingested") and any(m["role"] == "tool" for m in new):
        try:
            check_tool_results(new, (e.message for e in store.transcript(sid)))
        except InvalidInputError as exc:
            return _turn_failed(sid, tid, exc)
    if not state.get("ingested"):
        get_events().publish(sid, tid, EventType.TURN_STARTED, model=spec.name)
        get_metrics().incr("turns_submitted")
    store.append_turn(sid, tid, new, counter, model=spec.name, strategy=strategy)
    window = window_for(spec, settings, max_output_tokens=turn.max_tokens)
    prompt_tokens = store.prompt_tokens(sid, counter)
    pressure = window.pressure(prompt_tokens)
    completion = complete_turn.si(
        session_id=sid,
        turn_id=tid,
        model=spec.name,
        temperature=turn.temperature,
        max_tokens=turn.max_tokens,
        submitted_at=turn.submitted_at,
    )
    compression = compress_session.si(
        session_id=sid, turn_id=tid, model=spec.name, strategy=strategy, reason=str(pressure)
    )
    if pressure is Pressure.HARD:
        chain(compression, completion).apply_async()
    else:
        completion.apply_async()
        if pressure is Pressure.SOFT:
            compression.apply_async()
    store.set_turn_state(sid, tid, status="dispatched", dispatched=time.time())
    return {
        "status": "dispatched",
        "session_id": sid,
        "turn_id": tid,
        "pressure": str(pressure),
        "prompt_tokens": prompt_tokens,
        "appended": len(new),
    }


def _fit_window(
    sid: str, tid: str, spec: ModelSpec, *, max_tokens: int | None, margin_scale: float
) -> list[Any]:
    """The working window, failsafed down if it would not fit: never send an oversized request."""
    settings = get_settings()
    counter = counter_for(spec)
    working = get_store().working_window(sid, counter)
    window = window_for(spec, settings, max_output_tokens=max_tokens, margin_scale=margin_scale)
    if working.tokens <= window.usable_input:
        return working.messages
    result = Compression(
        working.messages,
        strategy=FAILSAFE,
        budget=window.usable_input,
        counter=counter,
        provider=spec.provider,
        settings=settings,
    ).run()
    metrics = get_metrics()
    metrics.incr("crashes_prevented")
    metrics.incr("failsafe_used")
    get_events().publish(
        sid,
        tid,
        EventType.COMPRESSION_COMPLETED,
        strategy=FAILSAFE,
        reason="send_guard",
        tokens_before=result.tokens_before,
        tokens_after=result.tokens_after,
        failsafe=True,
        truncated=result.truncated,
        applied=False,
    )
    return result.messages


def _stream_reply(
    self: Task,
    sid: str,
    tid: str,
    spec: ModelSpec,
    messages: list[Any],
    *,
    temperature: float | None,
    max_tokens: int | None,
    submitted_at: float,
) -> str:
    """Stream the reply, publishing only text subscribers have not seen.

    A redelivered or retried attempt regenerates from the start. While its text matches what
    earlier attempts published, nothing is re-sent; past that point only new text goes out.
    If it diverges, a ``turn_restarted`` event tells consumers to drop this turn's text so far.
    """
    store, events = get_store(), get_events()
    attempt, seen = store.start_attempt(sid, tid)
    reply, sent, diverged, first = "", len(seen), False, submitted_at > 0
    for delta in stream_completion(
        spec, messages, max_tokens=max_tokens, temperature=temperature, settings=get_settings()
    ):
        if first:
            first = False
            get_metrics().observe_first_token(time.time() - submitted_at)
        reply += delta
        if not diverged and not (seen.startswith(reply) or reply.startswith(seen)):
            diverged, sent = True, 0
            store.forget_published(sid, tid)
            events.publish(sid, tid, EventType.TURN_RESTARTED, attempt=attempt)
        if len(reply) > sent:
            events.publish_token(sid, tid, reply[sent:], attempt)
            sent = len(reply)
    if not diverged and len(reply) < len(seen):
        # The new attempt ended inside text an earlier one had shown: replace, don't leave extra.
        store.forget_published(sid, tid)
        events.publish(sid, tid, EventType.TURN_RESTARTED, attempt=attempt)
        events.publish_token(sid, tid, reply, attempt)
    return reply


@app.task(name=TASK_COMPLETE_TURN, bind=True, max_retries=None, acks_late=True)
def complete_turn(self: Task, **kwargs: Any) -> dict[str, Any]:
    """Generate the reply for an ingested turn and stream it to the session's subscribers."""
    with _redis_outage(self, get_settings().completion_soft_time_limit):
        return _complete_turn(self, **kwargs)


def _complete_turn(
    self: Task,
    *,
    session_id: str,
    turn_id: str,
    model: str,
    temperature: float | None = None,
    max_tokens: int | None = None,
    submitted_at: float = 0.0,
    margin_scale: float = 1.0,
) -> dict[str, Any]:
    store, settings = get_store(), get_settings()
    sid, tid = session_id, turn_id
    state = store.turn_state(sid, tid)
    if state.get("status") in DONE_STATES:
        return {"status": state["status"], "session_id": sid, "turn_id": tid}
    if state.get("replied"):
        return _turn_completed(sid, tid, store.published_text(sid, tid))
    try:
        spec = get_registry().get(model)
        store.heartbeat(sid, tid)
        messages = _fit_window(sid, tid, spec, max_tokens=max_tokens, margin_scale=margin_scale)
        get_metrics().incr("provider_calls", spec.provider)
        reply = _stream_reply(
            self,
            sid,
            tid,
            spec,
            messages,
            temperature=temperature,
            max_tokens=max_tokens,
            submitted_at=submitted_at,
        )
    except ContextWindowExceededError as exc:
        if margin_scale >= OVERFLOW_MARGIN_SCALE:
            return _turn_failed(sid, tid, exc)
        get_metrics().incr("context_retries")
        get_metrics().incr("crashes_prevented")
        raise self.retry(
            kwargs={**self.request.kwargs, "margin_scale": OVERFLOW_MARGIN_SCALE}, countdown=0
        ) from None
    except ProviderError as exc:
        if exc.retryable and self.request.retries < settings.max_retries:
            get_metrics().incr("errors", exc.code)  # a final failure is counted once, below
            raise self.retry(countdown=backoff(self.request.retries, exc.retry_after)) from None
        return _turn_failed(sid, tid, exc)
    except SoftTimeLimitExceeded:
        return _turn_failed(sid, tid, ProviderError("the turn ran past its time limit"))
    except TokenWindowError as exc:
        return _turn_failed(sid, tid, exc)
    counter = counter_for(spec)
    store.append_turn(
        sid,
        tid,
        [{"role": "assistant", "content": reply}],
        counter,
        model=spec.name,
        strategy=store.meta(sid).get("strategy", ""),
        status_field="replied",
    )
    return _turn_completed(sid, tid, reply)


def _turn_completed(sid: str, tid: str, reply: str) -> dict[str, Any]:
    store = get_store()
    store.set_turn_state(sid, tid, status="completed")
    get_events().publish(sid, tid, EventType.TURN_COMPLETED, chars=len(reply))
    get_metrics().incr("turns_completed")
    store.release_turn(sid, tid)
    return {"status": "completed", "session_id": sid, "turn_id": tid, "reply": reply}
