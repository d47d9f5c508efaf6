"""The turn ledger: every state a turn can be in, every transition, and the event each publishes.

A turn's record lives in its session's ledger hash (``tw:{SESSION}:turns``, see
``tokenwindow.constants``). Each transition is one Lua script (``workers/lua/``) that receives
all seven of the session's keys in KEYS, so it is atomic and touches one Redis Cluster slot:
a kill -9 or a Redis error between two transitions leaves the turn in a state from which a
redelivered task finishes it, once, or fails it with a clear event.

::

    new ──park──▶ waiting ──ingest──▶ ingested ──begin──▶ generating ──finish──▶ completed
     └────────────ingest───────────────▲    │  ▲              │ ▲  │
                            compress_first  │  └────retry─────┘ └begin (lease expired)
                                            ▼                      │
                                       compressing ──begin─────────┘
    any state but completed ──fail/evict──▶ failed

Turns of one session run one at a time, in arrival order: a turn that is not at the head of
its session's queue parks its task request, and the turn ahead hands it on (sends it again)
when it ends. Generation is guarded by a lease (task id and expiry): a redelivered task keeps
its id and takes its own lease back at once; a duplicate waits for the lease to expire.

A head that stops making progress (its task lost with a broker's message) has its task request
sent again by the recovery sweep (``recover``, ``workers/recovery.py``), at most
``MAX_RESENDS`` times; after that the next arrival evicts it once its stale mark passes.

A turn whose window needs no compression goes from new to generating in one call: ``ingest``
with a ``BeginAhead`` also takes the lease, as ``begin`` would. A worker runs turns' steps one
at a time (``workers.steps``), so a burst of new turns starts at the pace of those steps, and
this is one round trip and one script call fewer per turn (``python -m bench concurrency``,
README). The begun turn is counted in the metrics hash by the same script, so on Redis Cluster,
where that hash is in another slot, ``ingest`` never begins and ``begin`` is its own step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import redis
import redis.cluster

from tokenwindow.constants import (
    METRICS_KEY,
    RECOVERY_KEY,
    SESSIONS_INDEX_KEY,
    events_channel,
    session_keys,
    turns_key,
)
from tokenwindow.counting import message_key
from tokenwindow.eventlog import EMIT_LUA, encode_event
from tokenwindow.events import EventType
from tokenwindow.messages import Message, tool_call_ids
from tokenwindow.scripts import Along, SyncScript
from tokenwindow.sessions import Entry, text_of_reply

LUA_DIR = Path(__file__).with_name("lua")
EVICTED_MESSAGE = "the turn ahead stopped making progress and was abandoned"
MAX_RESENDS = 3
"""How often the recovery sweep sends one turn's task again before leaving it to eviction."""


class LeaseLostError(Exception):
    """Raised when a streaming task finds another task holds its turn's lease now."""


class TurnState(StrEnum):
    """Where a turn is; ``new`` means the ledger has no record of it yet."""

    NEW = "new"
    WAITING = "waiting"
    """Queued behind another turn of its session; its task request is parked in the ledger."""
    INGESTED = "ingested"
    """Its new messages are in the transcript; next it generates, or compresses first."""
    COMPRESSING = "compressing"
    """Over the hard threshold: a compression task runs, and generation follows it."""
    GENERATING = "generating"
    """A task holds the generation lease and streams the reply."""
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL = frozenset((TurnState.COMPLETED, TurnState.FAILED))
LIVE = frozenset(TurnState) - TERMINAL


@dataclass(frozen=True)
class Transition:
    sources: frozenset[TurnState]
    target: TurnState
    event: EventType | None
    script: str


TRANSITIONS: dict[str, Transition] = {
    "park": Transition(
        frozenset((TurnState.NEW, TurnState.WAITING)), TurnState.WAITING, None, "ingest"
    ),
    "ingest": Transition(
        frozenset((TurnState.NEW, TurnState.WAITING)),
        TurnState.INGESTED,
        EventType.TURN_STARTED,
        "ingest",
    ),
    "compress_first": Transition(
        frozenset((TurnState.INGESTED,)), TurnState.COMPRESSING, None, "advance"
    ),
    "compress_queued": Transition(
        frozenset((TurnState.COMPRESSING,)), TurnState.COMPRESSING, None, "advance"
    ),
    "begin": Transition(
        frozenset((TurnState.INGESTED, TurnState.COMPRESSING, TurnState.GENERATING)),
        TurnState.GENERATING,
        None,
        "advance",
    ),
    "retry": Transition(frozenset((TurnState.GENERATING,)), TurnState.INGESTED, None, "advance"),
    "finish": Transition(
        frozenset((TurnState.GENERATING,)), TurnState.COMPLETED, EventType.TURN_COMPLETED, "finish"
    ),
    "fail": Transition(LIVE, TurnState.FAILED, EventType.TURN_FAILED, "finish"),
    "evict": Transition(LIVE - {TurnState.NEW}, TurnState.FAILED, EventType.TURN_FAILED, "ingest"),
}
"""Every allowed move. A script refuses any other (the caller sees ``skip``); ``evict`` is done
inside ``ingest`` to the stale head of the queue. ``compress_queued`` stays in place and records
that the turn's ``compress_session`` is on the broker: a second delivery of the ingest then sends
no second compression (only a crash between the two steps leaves it to the redelivery)."""


def _sources(name: str) -> str:
    return ",".join(sorted(TRANSITIONS[name].sources))


@dataclass
class Outcome:
    """What a transition script answered."""

    outcome: str
    state: str = ""
    handoff: dict[str, Any] | None = None
    """The parked task request of the turn now at the head of the session, to send again."""
    record: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)

    @classmethod
    def parse(cls, header: str | bytes, entries: Sequence[Any] = ()) -> Outcome:
        data = json.loads(text_of_reply(header))
        handoff = data.pop("handoff", None)
        return cls(
            outcome=data.pop("outcome"),
            state=data.pop("state", ""),
            handoff=json.loads(handoff) if isinstance(handoff, str) else None,
            record=data.pop("record", None) or {},
            data=data,
            entries=[Entry.loads(raw) for raw in entries],
        )


@dataclass(frozen=True)
class BeginAhead:
    """What ``ingest`` needs to take the generation lease in the same call."""

    owner: str
    below: int
    """The most window tokens, in the caller's encoding, that need no compression first."""
    count: str
    """The counter a begun turn adds one to (and its session is marked active)."""


@dataclass(frozen=True)
class Limits:
    """Timing rules of the ledger, from the settings."""

    ttl_seconds: int
    maxlen: int
    lease_seconds: int
    """How long a generation lease lasts unless its stream renews it (every third of this)."""
    stale_seconds: int
    """A head of queue that makes no transition for this long is evicted by the next arrival."""
    lease_grace_seconds: int
    """A generating head is stale this long after its lease expires."""

    @property
    def recovery_grace_seconds(self) -> int:
        """A head that made no progress for this long is due a resend: one lease, so a live
        stream (which renews every third of a lease) is never due."""
        return self.lease_seconds


def _keys(session_id: str) -> list[str]:
    """Every key of the session, in the order ``workers/lua/common.lua`` names them."""
    return [*session_keys(session_id), events_channel(session_id)]


def lua_source(name: str) -> str:
    """A ledger script: the shared event step, the shared helpers, then the script itself."""
    common = (LUA_DIR / "common.lua").read_text(encoding="utf-8")
    return EMIT_LUA + common + (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")


def script_args(
    session_id: str, limits: Limits, header: dict[str, Any], *extra: str
) -> tuple[list[str], list[str]]:
    """(KEYS, ARGV) of a ledger script: every key of the session, the JSON header, entries."""
    head = {
        "sid": session_id,
        "now": time.time(),
        "ttl": limits.ttl_seconds,
        "maxlen": limits.maxlen,
        "stale_after": limits.stale_seconds,
        **header,
    }
    return _keys(session_id), [json.dumps(head, ensure_ascii=False, separators=(",", ":")), *extra]


def renew_header(turn_id: str, owner: str, limits: Limits) -> dict[str, Any]:
    """Header of the ``renew`` script, which the streaming loop runs while a reply streams."""
    return {
        "tid": turn_id,
        "owner": owner,
        "lease_seconds": limits.lease_seconds,
        "stale_after": limits.lease_grace_seconds,
    }


class Ledger:
    """Runs the transitions over one synchronous Redis client (standalone or cluster)."""

    def __init__(self, client: redis.Redis, limits: Limits) -> None:
        self.redis = client
        self.limits = limits
        self._scripts = {name: SyncScript(client, lua_source(name)) for name in _SCRIPTS}
        self._on_cluster = isinstance(client, redis.cluster.RedisCluster)

    def _run(
        self,
        name: str,
        session_id: str,
        header: dict[str, Any],
        *extra: str,
        along: Along | None = None,
        then: Along | None = None,
        more_keys: Sequence[str] = (),
    ) -> Any:
        """One script call; ``along`` and ``then`` add other writes (metrics, the recovery
        index) to the same round trip, before and after it."""
        keys, args = script_args(session_id, self.limits, header, *extra)
        return self._scripts[name]([*keys, *more_keys], args, along=along, then=then)

    # --- ingest (and park, and evict) ------------------------------------------------------
    def ingest(
        self,
        session_id: str,
        turn_id: str,
        entries: Sequence[Entry],
        *,
        request: dict[str, Any],
        model: str,
        strategy: str,
        encoding: str,
        history: bool = False,
        begin: BeginAhead | None = None,
    ) -> Outcome:
        """Join the session's queue and, at its head, append the new suffix of ``entries``.

        With ``history`` the entries are the caller's whole conversation: a departure from the
        session's active messages abandons the rest of them (kept in the transcript, left out
        of the working window). With ``begin``, a turn ingested with a window of at most
        ``begin.below`` tokens comes back ``generating``, as from ``begin`` (not on Cluster).
        """
        messages = [e.message for e in entries]
        header = {
            "tid": turn_id,
            "sources": _sources("ingest"),
            "digests": [message_key(m) for m in messages],
            "tokens": [e.tokens for e in entries],
            "calls": [list(tool_call_ids(m)) for m in messages],
            "answers": [_answer(m) for m in messages],
            "request": json.dumps(request, ensure_ascii=False, separators=(",", ":")),
            "model": model,
            "strategy": strategy,
            "encoding": encoding,
            "history": history,
            "evicted_message": EVICTED_MESSAGE,
            "started": encode_event(session_id, turn_id, EventType.TURN_STARTED, {"model": model}),
        }
        due = time.time() + self.limits.recovery_grace_seconds
        # After the script: a sweep that stops watching an idle session looks at it once more.
        watch = _watch(session_id, due, self.limits.ttl_seconds)
        batch = (e.dumps() for e in entries)
        more_keys: list[str] = []
        if begin is not None and not self._on_cluster:
            header["begin"] = {
                "owner": begin.owner,
                "below": begin.below,
                "count": begin.count,
                "lease_seconds": self.limits.lease_seconds,
                "stale_after": self.limits.lease_grace_seconds,
            }
            more_keys = [METRICS_KEY, SESSIONS_INDEX_KEY]
        reply = self._run("ingest", session_id, header, *batch, then=watch, more_keys=more_keys)
        if isinstance(reply, list):  # began: the header, then the working window's entries
            return Outcome.parse(reply[0], reply[1:])
        return Outcome.parse(reply)

    # --- recovery --------------------------------------------------------------------------
    def recover(
        self, session_ids: Sequence[str], *, before: Callable[[str], Along] | None = None
    ) -> list[Outcome | redis.exceptions.ResponseError]:
        """Look at each session's head turn for the recovery sweep (see
        ``workers/lua/recover``), all in one round trip, each look after the session's
        ``before`` commands: ``resend`` carries the task request to send again; ``wait`` when
        to look again. A session whose look failed in Redis has the error in its place."""
        header = {
            "grace": self.limits.recovery_grace_seconds,
            "max_resends": MAX_RESENDS,
        }
        calls = [
            (*script_args(sid, self.limits, header), before(sid) if before else None)
            for sid in session_ids
        ]
        return [
            reply if isinstance(reply, redis.exceptions.ResponseError) else Outcome.parse(reply)
            for reply in self._scripts["recover"].many(calls)
        ]

    # --- moves between live states ---------------------------------------------------------
    def compress_first(self, session_id: str, turn_id: str) -> Outcome:
        return self._advance("compress_first", session_id, turn_id, owner="")

    def compress_queued(self, session_id: str, turn_id: str) -> Outcome:
        return self._advance(
            "compress_queued", session_id, turn_id, owner="", set={"compress_queued": True}
        )

    def begin(
        self,
        session_id: str,
        turn_id: str,
        owner: str,
        *,
        compression_sent: bool = False,
        along: Along | None = None,
    ) -> Outcome:
        """Take the generation lease; with it come the published text and the working window.

        ``owner`` names this execution, not just the task: two deliveries of one task (a
        broker may redeliver while the first still runs) never both hold the lease.
        """
        extra: dict[str, Any] = {
            "lease_seconds": self.limits.lease_seconds,
            "stale_after": self.limits.lease_grace_seconds,
        }
        if compression_sent:
            extra["set"] = {"compression_sent": True}
        return self._advance("begin", session_id, turn_id, along, owner=owner, **extra)

    def retry(
        self, session_id: str, turn_id: str, owner: str, *, count: str, **fields: Any
    ) -> Outcome:
        """Give the lease back before a retry, counting it under ``count``."""
        return self._advance(
            "retry", session_id, turn_id, None, owner=owner, count=count, set=fields
        )

    def _advance(
        self, name: str, session_id: str, turn_id: str, along: Along | None = None, **extra: Any
    ) -> Outcome:
        header = {"tid": turn_id, "sources": _sources(name), "target": TRANSITIONS[name].target}
        reply = self._run("advance", session_id, {**header, **extra}, along=along)
        return Outcome.parse(reply[0], reply[1:])

    # --- terminal --------------------------------------------------------------------------
    def finish(
        self,
        session_id: str,
        turn_id: str,
        owner: str,
        reply: Entry,
        summary: dict[str, Any],
        *,
        along: Along | None = None,
    ) -> Outcome:
        """Append the reply, publish ``turn_completed``, hand the session on."""
        header = {
            "tid": turn_id,
            "owner": owner,
            "sources": _sources("finish"),
            "target": TurnState.COMPLETED,
            "digest": message_key(reply.message),
            "tokens": reply.tokens,
            "calls": list(tool_call_ids(reply.message)),
            "body": encode_event(session_id, turn_id, EventType.TURN_COMPLETED, summary),
        }
        return Outcome.parse(self._run("finish", session_id, header, reply.dumps(), along=along))

    def fail(self, session_id: str, turn_id: str, owner: str, error: dict[str, Any]) -> Outcome:
        """Publish ``turn_failed`` and hand the session on; ``owner`` is "" outside generation."""
        header = {
            "tid": turn_id,
            "owner": owner,
            "sources": _sources("fail"),
            "target": TurnState.FAILED,
            "body": encode_event(session_id, turn_id, EventType.TURN_FAILED, error),
        }
        return Outcome.parse(self._run("finish", session_id, header))

    def record(self, session_id: str, turn_id: str) -> dict[str, Any]:
        raw = self.redis.hget(turns_key(session_id), turn_id)
        return json.loads(text_of_reply(raw)) if raw else {}


def _watch(session_id: str, due: float, ttl_seconds: int) -> Along:
    """Have the recovery sweep look at the session by ``due`` (an earlier time stands). The
    index expires with the last session, should no worker sweep it."""

    def commands(pipe: Any) -> None:
        pipe.zadd(RECOVERY_KEY, {session_id: due}, lt=True)
        pipe.expire(RECOVERY_KEY, ttl_seconds)

    return commands


_SCRIPTS = ("ingest", "advance", "finish", "recover")
RENEW_SCRIPT = "renew"


def _answer(message: Message) -> str:
    call_id = message.get("tool_call_id") if message["role"] == "tool" else None
    return str(call_id) if call_id else ""
