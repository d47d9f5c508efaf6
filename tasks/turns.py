"""The turn pipeline: ingest a turn, compress if needed, stream the reply.

``ingest_turn`` takes the session in arrival order, appends the new messages once per turn id
and decides: under the soft threshold it generates the reply itself; between soft and hard it
also enqueues a background compression; over hard it chains compression before
``complete_turn``. Generation never sends more than the usable window, streams deltas as events,
appends the reply and hands the session to the next turn.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import redis.exceptions
from celery import Task, chain
from celery.exceptions import SoftTimeLimitExceeded

from tasks.compression import compress_session
from tokenwindow.constants import (
    SESSION_ID_PATTERN,
    TASK_COMPLETE_TURN,
    TASK_INGEST_TURN,
    TURN_ID_PATTERN,
)
from tokenwindow.counting import counter_for
from tokenwindow.errors import (
    ContextWindowExceededError,
    InternalError,
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
from workers.backoff import backoff, wait_for_session
from workers.compressor import FAILSAFE, Compression
from workers.connections import get_events, get_metrics, get_store
from workers.llm import CompletionUsage, stream_completion

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
    """Record a failed turn everywhere a consumer might look, and free the session.

    Metrics move before the terminal event, so a consumer that reads them on the event sees
    them; the state is marked done only after the event, so a crash in between re-publishes
    rather than losing it.
    """
    store = get_store()
    get_metrics().incr("turns_failed")
    get_metrics().incr("errors", error.code)
    get_events().publish(session_id, turn_id, EventType.TURN_FAILED, **error.to_dict())
    store.set_turn_state(session_id, turn_id, status="failed", code=error.code)
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
    """Append a turn's new messages (once per turn id), then answer it or chain compression."""
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
    if not state.get("ingested"):
        new = store.new_suffix(store.meta(sid), turn.typed_messages)
        if any(m["role"] == "tool" for m in new):
            try:
                check_tool_results(new, (e.message for e in store.transcript(sid)))
            except InvalidInputError as exc:
                return _turn_failed(sid, tid, exc)
        get_events().publish(sid, tid, EventType.TURN_STARTED, model=spec.name)
        get_metrics().incr("turns_submitted")
        store.append_turn(sid, tid, new, counter, model=spec.name, strategy=strategy)
    window = window_for(spec, settings, max_output_tokens=turn.max_tokens)
    pressure = window.pressure(store.prompt_tokens(sid, counter))
    reply = Generation(
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
        # Compress first, in its own retryable task; the chain then generates. Never .get().
        chain(compression, complete_turn.si(**reply.kwargs())).apply_async()
        store.set_turn_state(sid, tid, status="dispatched", dispatched=time.time())
        return {"status": "dispatched", "session_id": sid, "turn_id": tid, "pressure": "hard"}
    if pressure is Pressure.SOFT and not state.get("compression_sent"):
        # Proactive: the next turn finds the window already small.
        compression.apply_async()
        store.set_turn_state(sid, tid, compression_sent=time.time())
    return _generate(self, spec, reply)


@dataclass(frozen=True)
class Generation:
    """What generating one turn's reply needs: small, JSON-ready task arguments."""

    session_id: str
    turn_id: str
    model: str
    temperature: float | None = None
    max_tokens: int | None = None
    submitted_at: float = 0.0

    def kwargs(self) -> dict[str, Any]:
        return asdict(self)


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


@dataclass(frozen=True)
class Reply:
    """A finished reply and what the provider said about it."""

    text: str
    finish_reason: str | None = None
    usage: CompletionUsage | None = None

    def summary(self) -> dict[str, Any]:
        """Fields of the ``turn_completed`` event (usage only when the provider reported it)."""
        fields: dict[str, Any] = {"chars": len(self.text), "finish_reason": self.finish_reason}
        if self.usage is not None:
            fields["prompt_tokens"] = self.usage.prompt_tokens
            fields["completion_tokens"] = self.usage.completion_tokens
        return fields


def _stream_reply(
    sid: str, tid: str, spec: ModelSpec, messages: list[Any], reply: Generation
) -> Reply:
    """Stream the reply, publishing only text subscribers have not seen.

    A redelivered or retried attempt regenerates from the start. While its text matches what
    earlier attempts published, nothing is re-sent; past that point only new text goes out.
    If it diverges, a ``turn_restarted`` event tells consumers to drop this turn's text so far.
    """
    store, events = get_store(), get_events()
    attempt, seen = store.start_attempt(sid, tid)
    text, sent, diverged, first = "", len(seen), False, reply.submitted_at > 0
    stream = stream_completion(
        spec,
        messages,
        max_tokens=reply.max_tokens,
        temperature=reply.temperature,
        settings=get_settings(),
    )
    for delta in stream:
        if first:
            first = False
            get_metrics().observe_first_token(time.time() - reply.submitted_at)
        text += delta
        if not diverged and not (seen.startswith(text) or text.startswith(seen)):
            diverged, sent = True, 0
            store.forget_published(sid, tid)
            events.publish(sid, tid, EventType.TURN_RESTARTED, attempt=attempt)
        if len(text) > sent:
            events.publish_token(sid, tid, text[sent:], attempt)
            sent = len(text)
    if not diverged and len(text) < len(seen):
        # The new attempt ended inside text an earlier one had shown: replace, don't leave extra.
        store.forget_published(sid, tid)
        events.publish(sid, tid, EventType.TURN_RESTARTED, attempt=attempt)
        events.publish_token(sid, tid, text, attempt)
    return Reply(text, stream.finish_reason, stream.usage)


@app.task(name=TASK_COMPLETE_TURN, bind=True, max_retries=None, acks_late=True)
def complete_turn(self: Task, **kwargs: Any) -> dict[str, Any]:
    """Generate the reply of a turn whose window was compressed first (the hard path)."""
    with _redis_outage(self, get_settings().completion_soft_time_limit):
        reply = Generation(**kwargs)
        try:
            spec = get_registry().get(reply.model)
        except TokenWindowError as exc:
            return _turn_failed(reply.session_id, reply.turn_id, exc)
        return _generate(self, spec, reply)


def _generate(self: Task, spec: ModelSpec, reply: Generation) -> dict[str, Any]:
    """Stream the reply of an ingested turn, once, however often this task runs."""
    store, settings = get_store(), get_settings()
    sid, tid = reply.session_id, reply.turn_id
    state = store.turn_state(sid, tid)
    if state.get("status") in DONE_STATES:
        return {"status": state["status"], "session_id": sid, "turn_id": tid}
    if state.get("replied"):
        return _turn_completed(sid, tid, Reply(store.published_text(sid, tid)))
    owner = str(self.request.id)
    if not store.claim_generation(sid, tid, owner, settings.completion_time_limit):
        raise self.retry(countdown=1.0)
    store.heartbeat(sid, tid)
    try:
        margin_scale = float(state.get("margin_scale", 1.0))
        messages = _fit_window(
            sid, tid, spec, max_tokens=reply.max_tokens, margin_scale=margin_scale
        )
        get_metrics().incr("provider_calls", spec.provider)
        answer = _stream_reply(sid, tid, spec, messages, reply)
    except ContextWindowExceededError as exc:
        if margin_scale >= OVERFLOW_MARGIN_SCALE:
            return _turn_failed(sid, tid, exc)
        get_metrics().incr("context_retries")
        get_metrics().incr("crashes_prevented")
        store.set_turn_state(sid, tid, margin_scale=OVERFLOW_MARGIN_SCALE)
        raise self.retry(countdown=0) from None
    except ProviderError as exc:
        used = store.count_provider_retry(sid, tid) if exc.retryable else None
        if used is not None and used <= settings.max_retries:
            get_metrics().incr("errors", exc.code)  # a final failure is counted once, below
            raise self.retry(countdown=backoff(used - 1, exc.retry_after)) from None
        return _turn_failed(sid, tid, exc)
    except SoftTimeLimitExceeded:
        return _turn_failed(sid, tid, ProviderError("the turn ran past its time limit"))
    except TokenWindowError as exc:
        return _turn_failed(sid, tid, exc)
    except REDIS_ERRORS:
        raise  # waited out by _redis_outage, then run again
    except Exception:
        # A bug must not strand the session's later turns: fail this one, keep the trace.
        log.exception("turn failed unexpectedly", extra={"fields": {"session_id": sid}})
        _turn_failed(sid, tid, InternalError("the turn failed unexpectedly; see worker logs"))
        raise
    finally:
        store.release_generation(sid, tid, owner)
    store.append_turn(
        sid,
        tid,
        [{"role": "assistant", "content": answer.text}],
        counter_for(spec),
        model=spec.name,
        strategy=store.meta(sid).get("strategy", ""),
        status_field="replied",
    )
    return _turn_completed(sid, tid, answer)


def _turn_completed(sid: str, tid: str, reply: Reply) -> dict[str, Any]:
    """The same order as ``_turn_failed``: metrics, terminal event, state, next turn."""
    store = get_store()
    get_metrics().incr("turns_completed")
    get_events().publish(sid, tid, EventType.TURN_COMPLETED, **reply.summary())
    store.set_turn_state(sid, tid, status="completed")
    store.release_turn(sid, tid)
    return {"status": "completed", "session_id": sid, "turn_id": tid, "reply": reply.text}
