"""The turn pipeline as Celery tasks: thin steps over the turn ledger (``workers.ledger``).

``ingest_turn`` moves a turn into its session (or parks it behind the turn ahead) and decides:
under the soft threshold it generates the reply itself; between soft and hard it also enqueues
a background compression; over hard it hands the turn to ``compress_session``, which always
sends ``complete_turn`` on, whatever happened to the compression. Generation streams on the
worker's event loop (``workers.engine``), never sends more than the usable window, and ends
the turn with one atomic transition that also hands the session to the next parked turn.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import redis.exceptions
from celery import Task, states
from celery.exceptions import SoftTimeLimitExceeded

from strategies.clearing import floor_after_clearing
from tasks.compression import compress_session
from tokenwindow.constants import (
    SESSION_ID_PATTERN,
    TASK_COMPLETE_TURN,
    TASK_INGEST_TURN,
    TURN_ID_PATTERN,
)
from tokenwindow.counting import REPLY_PRIMING, counter_for
from tokenwindow.errors import (
    ContextWindowExceededError,
    InternalError,
    InvalidInputError,
    ProviderError,
    ProviderTimeoutError,
    TokenWindowError,
)
from tokenwindow.events import EventType
from tokenwindow.messages import Message
from tokenwindow.metrics import Count, MetricsRecorder
from tokenwindow.models import ModelSpec, get_registry
from tokenwindow.params import check_chat_params
from tokenwindow.protocol import TurnRequest
from tokenwindow.scripts import Along
from tokenwindow.sessions import Entry
from tokenwindow.settings import get_settings
from tokenwindow.window import (
    Pressure,
    Window,
    context_fallback,
    tool_schema_tokens,
    window_for,
)
from workers.app import app
from workers.backoff import backoff
from workers.compressor import FAILSAFE, Compression, clearing_policy
from workers.connections import get_events, get_ledger, get_metrics, get_redis, get_store
from workers.engine import get_engine
from workers.ledger import BeginAhead, LeaseLostError, Ledger, Outcome, TurnState
from workers.session_store import WorkingWindow, window_from
from workers.steps import STEPS
from workers.streaming import Attempt, Reply, stream_reply

log = logging.getLogger(__name__)

OVERFLOW_MARGIN_SCALE = 3.0
"""After a provider context-length error, the safety margin is this many times larger."""
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
SUBMITTED = "turns_submitted"
"""Counted once per turn, when it begins or must be compressed first."""
REDIS_POLL_SECONDS = 1.0


@contextlib.contextmanager
def _redis_outage(task: Task, limit: float) -> Iterator[None]:
    """If Redis drops out mid-task, wait for it to answer again, then run the task again.

    Every transition is atomic and idempotent per turn id, and a re-run completion resumes
    by what was published, so running again is safe.
    """
    try:
        yield
    except REDIS_ERRORS as exc:
        log.warning("redis unreachable; waiting", extra={"fields": {"error": type(exc).__name__}})
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                get_redis().ping()
                break
            except REDIS_ERRORS:
                time.sleep(REDIS_POLL_SECONDS)
        raise task.retry(countdown=REDIS_POLL_SECONDS) from None


@dataclass(frozen=True)
class Generation:
    """What generating one turn's reply needs: small, JSON-ready task arguments."""

    session_id: str
    turn_id: str
    model: str
    temperature: float | None = None
    max_tokens: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    submitted_at: float = 0.0

    def __post_init__(self) -> None:
        """Internal task arguments are trusted less than a crash: a wrong type stops here."""
        for name, kind in (("max_tokens", int), ("temperature", int | float)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                raise TypeError(f"{name}: expected a number, got {type(value).__name__}")

    def kwargs(self) -> dict[str, Any]:
        return asdict(self)

    def tools_tokens(self, spec: ModelSpec) -> int:
        """What the request's tool schemas take of ``spec``'s window, on every turn."""
        return tool_schema_tokens(spec, self.params.get("tools"))

    def window(self, spec: ModelSpec, *, scale: float = 1.0) -> Window:
        return window_for(
            spec,
            get_settings(),
            max_output_tokens=self.max_tokens,
            margin_scale=scale,
            tools_tokens=self.tools_tokens(spec),
        )

    def chat_params(self) -> dict[str, Any]:
        named = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        return {**self.params, **{k: v for k, v in named.items() if v is not None}}


def _hand_on(outcome: Outcome) -> None:
    """Send the parked turn that is now at the head of the session, if there is one."""
    if outcome.handoff is not None:
        ingest_turn.apply_async(kwargs=outcome.handoff)


Failure = dict[str, Any] | None
"""A failed turn's task result (code and message, never text); ``None`` keeps no result."""


def _fail(
    session_id: str,
    turn_id: str,
    owner: str,
    error: TokenWindowError,
    also: Sequence[Count] = (),
) -> Failure:
    """End the turn with ``turn_failed``; metrics move first so a reader of the event sees them."""
    get_metrics().record([("turns_failed", None, 1), ("errors", error.code, 1), *also])
    _hand_on(get_ledger().fail(session_id, turn_id, owner, error.to_dict()))
    return {"status": "failed", "session_id": session_id, "turn_id": turn_id, **error.to_dict()}


def _keep_failure(task: Task, failure: Failure) -> None:
    """Turn tasks keep no results, except why a turn failed: a producer may ask for that."""
    if failure is not None:
        task.backend.store_result(task.request.id, failure, states.SUCCESS, request=task.request)


def _reject(kwargs: dict[str, Any], error: InvalidInputError) -> Failure:
    """Bad task arguments: report on the session if it is identifiable, lose nothing else."""
    session_id, turn_id = kwargs.get("session_id"), kwargs.get("turn_id")
    if (
        isinstance(session_id, str)
        and isinstance(turn_id, str)
        and SESSION_ID_PATTERN.fullmatch(session_id)
        and TURN_ID_PATTERN.fullmatch(turn_id)
    ):
        return _fail(session_id, turn_id, "", error)
    get_metrics().incr("errors", error.code)
    return {"status": "failed", **error.to_dict()}


@app.task(name=TASK_INGEST_TURN, bind=True, max_retries=None, acks_late=True, ignore_result=True)
def ingest_turn(self: Task, *args: Any, **kwargs: Any) -> None:
    """Move a turn into its session (once per turn id), then answer it or compress first."""
    with _redis_outage(self, get_settings().completion_soft_time_limit), STEPS.held():
        _keep_failure(self, _ingest_turn(self, args, kwargs))


def _ingest_turn(self: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Failure:
    try:
        if args:
            raise InvalidInputError(
                f"turn: {TASK_INGEST_TURN} takes keyword arguments only, got {len(args)} positional"
            )
        turn = TurnRequest.parse(kwargs)
    except InvalidInputError as exc:
        return _reject(kwargs, exc)
    settings, ledger = get_settings(), get_ledger()
    sid, tid = turn.session_id, turn.turn_id
    try:
        spec = get_registry().get(turn.model)
        params = check_chat_params(spec, turn.params or {})
    except TokenWindowError as exc:
        return _fail(sid, tid, "", exc)
    counter = counter_for(spec)
    strategy = str(turn.strategy or settings.default_strategy)
    entries = [Entry(m, counter.count_message(m), tid) for m in turn.typed_messages]
    request = turn.model_dump(mode="json", exclude_none=True)
    generation = Generation(
        session_id=sid,
        turn_id=tid,
        model=spec.name,
        temperature=turn.temperature,
        max_tokens=turn.max_tokens,
        params=params,
        submitted_at=turn.submitted_at,
    )
    window, owner = generation.window(spec), _owner(self)
    out = ledger.ingest(
        sid,
        tid,
        entries,
        request=request,
        model=spec.name,
        strategy=strategy,
        encoding=counter.encoding_name,
        history=turn.history,
        # Under the soft threshold no compression comes first: begin in the same call.
        begin=BeginAhead(owner, below=window.soft - REPLY_PRIMING, count=SUBMITTED),
    )
    compression = {
        "session_id": sid,
        "turn_id": tid,
        "model": spec.name,
        "strategy": strategy,
        "tools_tokens": window.tools_tokens,
    }
    if out.outcome == "done":
        _hand_on(out)
        return None
    if out.outcome == "invalid":
        where = f"messages[{out.data['index']}].tool_call_id"
        message = f"{out.data['tool_call_id']!r:.80} answers no earlier assistant tool call"
        return _fail(sid, tid, "", InvalidInputError(f"{where}: {message}"))
    if out.outcome == "skip":
        # A redelivery (or a second copy) of a turn already past ingest: carry on from there.
        if out.state == TurnState.COMPRESSING and not out.data.get("compress_queued"):
            _compress_first(ledger, compression, generation, "hard")
        elif out.state != TurnState.WAITING:
            return _generate(self, spec, generation)
        return None
    if out.outcome == "generating":
        return _stream(self, spec, generation, owner, out)
    if out.outcome != "ingested":  # parked: the turn ahead hands it on
        return None
    if out.data.get("encoding") == counter.encoding_name:
        tokens = REPLY_PRIMING + int(out.data.get("window_tokens") or 0)
    else:
        tokens = get_store().working_window(sid, counter).tokens
    pressure = window.pressure(tokens)
    if pressure is Pressure.HARD:
        get_metrics().record([(SUBMITTED, None, 1)], active_session=sid)
        if ledger.compress_first(sid, tid).outcome == "advanced":
            _compress_first(ledger, compression, generation, str(pressure))
        return None
    proactive = pressure is Pressure.SOFT and not out.record.get("compression_sent")
    if proactive:
        # The next turn finds the window already small.
        compress_session.apply_async(kwargs={**compression, "reason": str(pressure)})
    return _generate(self, spec, generation, compression_sent=proactive, submitted=True)


def _compress_first(
    ledger: Ledger, compression: dict[str, Any], generation: Generation, reason: str
) -> None:
    """Send the compression this turn's reply waits for, in its own retryable task (which then
    sends complete_turn), and mark it sent so that a redelivered ingest does not send it again."""
    then = generation.kwargs()
    compress_session.apply_async(kwargs={**compression, "reason": reason, "then": then})
    ledger.compress_queued(generation.session_id, generation.turn_id)


@app.task(name=TASK_COMPLETE_TURN, bind=True, max_retries=None, acks_late=True, ignore_result=True)
def complete_turn(self: Task, **kwargs: Any) -> None:
    """Generate the reply of a turn whose window was compressed first (the hard path)."""
    with _redis_outage(self, get_settings().completion_soft_time_limit), STEPS.held():
        generation = Generation(**kwargs)
        try:
            spec = get_registry().get(generation.model)
        except TokenWindowError as exc:
            failure = _fail(generation.session_id, generation.turn_id, "", exc)
        else:
            failure = _generate(self, spec, generation)
        _keep_failure(self, failure)


def _fit_window(
    spec: ModelSpec, working: WorkingWindow, generation: Generation, *, scale: float
) -> tuple[ModelSpec, list[Message]]:
    """The model and messages to send: never an oversized request.

    A window over the model's usable input goes to a configured larger model
    (``context_window_fallbacks``) when even clearing and the strategies could not keep the
    newest turn whole here; otherwise the failsafe cuts it down.
    """
    settings = get_settings()
    window = generation.window(spec, scale=scale)
    if working.tokens <= window.usable_input:
        return spec, working.messages
    counter = counter_for(spec)
    if spec.context_window_fallbacks:
        floor = floor_after_clearing(working.messages, counter, clearing_policy(settings))
        bigger = context_fallback(
            spec,
            floor,
            get_registry(),
            settings,
            max_output_tokens=generation.max_tokens,
            tools_tokens=generation.tools_tokens(spec),
        )
        if floor > window.usable_input and bigger is not None:
            get_events().publish(
                generation.session_id,
                generation.turn_id,
                EventType.MODEL_FALLBACK,
                model=spec.name,
                fallback=bigger.name,
                tokens=working.tokens,
                usable_input=window.usable_input,
            )
            get_metrics().record([("context_fallbacks", bigger.name, 1)])
            resized = replace(working, tokens=counter_for(bigger).count_messages(working.messages))
            return _fit_window(bigger, resized, generation, scale=scale)
    result = Compression(
        working.messages,
        strategy=FAILSAFE,
        budget=window.usable_input,
        counter=counter,
        provider=spec.provider,
        settings=settings,
    ).run()
    get_metrics().record([("crashes_prevented", None, 1), ("failsafe_used", None, 1)])
    get_events().publish(
        generation.session_id,
        generation.turn_id,
        EventType.COMPRESSION_COMPLETED,
        strategy=FAILSAFE,
        reason="send_guard",
        tokens_before=result.tokens_before,
        tokens_after=result.tokens_after,
        failsafe=True,
        truncated=result.truncated,
        applied=False,
    )
    return spec, result.messages


def _generate(
    self: Task,
    spec: ModelSpec,
    generation: Generation,
    *,
    compression_sent: bool = False,
    submitted: bool = False,
) -> Failure:
    """Stream the reply of an ingested turn, once, however often this task runs."""
    sid, tid = generation.session_id, generation.turn_id
    owner = _owner(self)
    began = get_ledger().begin(
        sid,
        tid,
        owner,
        compression_sent=compression_sent,
        along=_counted([(SUBMITTED, None, 1)], active_session=sid) if submitted else None,
    )
    if began.outcome == "done":
        _hand_on(began)
    if began.outcome == "busy":
        # Another execution streams this turn. If it died, its lease runs out: then take over.
        wait = max(float(began.data["lease_until"]) - time.time(), 0.0)
        raise self.retry(countdown=wait + random.uniform(0.5, 1.5))
    if began.outcome != "generating":
        return None  # finished, or not this task's to generate
    return _stream(self, spec, generation, owner, began)


def _owner(task: Task) -> str:
    """Names this execution of the task: two deliveries of one task never share a lease."""
    return f"{task.request.id}:{uuid.uuid4().hex[:12]}"


def _stream(
    self: Task, spec: ModelSpec, generation: Generation, owner: str, began: Outcome
) -> Failure:
    """Stream the reply of a turn whose lease ``owner`` has just taken (``began``)."""
    settings, ledger = get_settings(), get_ledger()
    sid, tid = generation.session_id, generation.turn_id
    data, counter = began.data, counter_for(spec)
    scale = float(began.record.get("margin_scale", 1.0))
    tried = int(began.record.get("retries", 0))
    # Turns spread over the name's deployments; a retry moves to the next one.
    deployed = spec.deployment(zlib.crc32(tid.encode()) + tried)
    called: list[Count] = [("provider_calls", spec.provider, 1)]
    attempt = Attempt(
        sid, tid, owner, int(began.record["attempt"]), data["published"], data["tools_published"]
    )
    try:
        working = window_from(data, began.entries, counter)
        target, messages = _fit_window(deployed, working, generation, scale=scale)
        reply = get_engine().run(
            stream_reply(
                get_engine(), attempt, target, messages, generation.chat_params(), settings=settings
            )
        )
    except ContextWindowExceededError as exc:
        if scale >= OVERFLOW_MARGIN_SCALE:
            return _fail(sid, tid, owner, exc, called)
        get_metrics().record(
            [("context_retries", None, 1), ("crashes_prevented", None, 1), *called]
        )
        ledger.retry(sid, tid, owner, count="overflows", margin_scale=OVERFLOW_MARGIN_SCALE)
        raise self.retry(countdown=0) from None
    except ProviderError as exc:
        if exc.retryable:
            # The recovery sweep leaves the turn alone until its retry is due.
            countdown = backoff(tried, exc.retry_after)
            retry_at = time.time() + countdown
            moved = ledger.retry(sid, tid, owner, count="retries", retry_at=retry_at)
            used = int(moved.record.get("retries", 0))
            if moved.outcome == "advanced" and used <= settings.max_retries:
                get_metrics().record(
                    [("errors", exc.code, 1), ("provider_calls", spec.provider, 1)]
                )
                raise self.retry(countdown=countdown) from None
        return _fail(sid, tid, owner, exc, called)
    except (TimeoutError, SoftTimeLimitExceeded):
        return _fail(
            sid, tid, owner, ProviderTimeoutError("the turn ran past its time limit"), called
        )
    except TokenWindowError as exc:
        return _fail(sid, tid, owner, exc, called)
    except LeaseLostError:
        return None  # another execution took the turn over after our lease ran out
    except REDIS_ERRORS:
        raise  # waited out by _redis_outage, then run again
    except Exception:
        # A bug must not strand the session's later turns: fail this one, keep the trace.
        log.exception("turn failed unexpectedly", extra={"fields": {"session_id": sid}})
        _fail(sid, tid, owner, InternalError("the turn failed unexpectedly; see worker logs"))
        raise
    _finish(owner, spec, generation, reply)
    return None


def _finish(owner: str, spec: ModelSpec, generation: Generation, reply: Reply) -> None:
    """Metrics first (a reader of ``turn_completed`` sees them), then the atomic finish, in one
    round trip."""
    message = reply.message()
    counts: list[Count] = [("turns_completed", None, 1), ("provider_calls", spec.provider, 1)]
    first = reply.first_delta_at
    latency = first - generation.submitted_at if first and generation.submitted_at else None
    sid, tid = generation.session_id, generation.turn_id
    entry = Entry(message, counter_for(spec).count_message(message), tid)
    along = _counted(counts, first_token_seconds=latency, active_session=sid)
    _hand_on(get_ledger().finish(sid, tid, owner, entry, reply.summary(), along=along))


def _counted(counts: list[Count], **extra: Any) -> Along:
    """Metrics written in the same round trip as a ledger step (they go first in it)."""
    return lambda pipe: MetricsRecorder.queue(pipe, counts, **extra)
