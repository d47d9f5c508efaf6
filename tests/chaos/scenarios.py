"""Fault scenarios, each run against real workers and judged by ``support.audit``.

The tests in this package run them small; ``python -m bench.chaos`` runs them at full size
and prints one table row per scenario. Each returns a ``Row``: turns sent, completed, failed
(with a clear error, where that is the right outcome), lost, duplicated, and the recovery
time, from the end of the fault to the last turn's terminal event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from kombu import Connection

from tests.chaos.support import (
    TurnRecord,
    audit,
    generation_attempts,
    new_session,
    p99,
    run_sessions,
    run_turn,
    stack,
)
from tests.fakes.behaviour import Fault
from tests.fakes.server import FakeProviderServer
from tests.harness import WorkerProcess
from tests.redis_server import RedisServer
from tests.stack import BIG_MODEL, ESTIMATED_MODEL, TINY_MODEL, Stack
from tests.topologies import RabbitNode, SentinelTopology, start_sentinel
from tokenwindow.client import TokenManagementClient
from tokenwindow.constants import (
    METRICS_KEY,
    QUEUE_COMPLETIONS,
    QUEUE_FAST,
    QUEUE_SUMMARIZATION,
    QUEUES,
    events_stream_key,
)
from tokenwindow.events import EventType
from tokenwindow.settings import get_settings
from tokenwindow.topology import QUORUM, sync_redis

LONG_LIMITS = {
    # Tasks outlive a frozen Redis, so nothing is redelivered while the first run still works.
    "TOKENWINDOW_COMPLETION_SOFT_TIME_LIMIT": "100",
    "TOKENWINDOW_COMPLETION_TIME_LIMIT": "110",
    "TOKENWINDOW_SUMMARIZATION_SOFT_TIME_LIMIT": "60",
    "TOKENWINDOW_SUMMARIZATION_TIME_LIMIT": "70",
    "TOKENWINDOW_VISIBILITY_MARGIN_SECONDS": "10",
}
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
WORDS += ["golf", "hotel", "india", "juliet", "kilo", "lima"]


@dataclass
class Row:
    fault: str
    broker: str = "redis"
    sent: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    duplicated: int = 0
    recovery_s: float | None = None
    requests: int = 0
    generations: int = 0
    """Generation attempts the ledger began (see ``support.generation_attempts``)."""
    note: str = ""
    problems: list[str] = field(default_factory=list)

    def fill(self, client: redis.Redis, records: list[TurnRecord]) -> Row:
        result = audit(client, records)
        self.sent, self.completed, self.failed = result.sent, result.completed, result.failed
        self.lost, self.duplicated, self.problems = result.lost, result.duplicated, result.problems
        return self


def broker_name(broker_url: str | None, overrides: dict[str, str] | None = None) -> str:
    if not (broker_url and broker_url.startswith("amqp")):
        return "redis"
    quorum = (overrides or {}).get("TOKENWINDOW_BROKER_QUORUM_QUEUES") == "true"
    return "rabbitmq quorum" if quorum else "rabbitmq"


def purge_queues(broker_url: str | None, overrides: dict[str, str] | None = None) -> None:
    """RabbitMQ queues outlive a run; start each scenario with them empty (declared as the
    workers declare them: a quorum queue refuses a classic declaration)."""
    if broker_url and broker_url.startswith("amqp"):
        quorum = broker_name(broker_url, overrides) == "rabbitmq quorum"
        with Connection(broker_url) as conn:
            channel = conn.default_channel
            for name in QUEUES:
                arguments = QUORUM if quorum else None
                channel.queue_declare(name, durable=True, auto_delete=False, arguments=arguments)
                channel.queue_purge(name)


def long_text(session_id: str) -> str:
    """A user message the fake echoes back as a reply of about twenty stream pieces."""
    return " ".join([session_id, *WORDS])


def _run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def _started(client: redis.Redis) -> int:
    return int(client.hget(METRICS_KEY, "turns_submitted") or 0)


# --- worker kills ---------------------------------------------------------------------------------
def kill_streaming(
    workdir: Path, redis_url: str, broker_url: str | None = None, **overrides: str
) -> Row:
    """SIGKILL a worker while three replies stream; a fresh worker finishes them."""
    row = Row("kill -9 while streaming", broker_name(broker_url, overrides))
    purge_queues(broker_url, overrides)
    with stack(workdir, redis_url, broker_url=broker_url, **overrides) as s:
        s.provider.configure(token_delay=0.15)
        first = s.worker(pool="threads", concurrency=20)
        second = s.worker(pool="threads", concurrency=20, start=False)
        sessions = [new_session("kill-stream") for _ in range(3)]

        async def scenario() -> tuple[list[TurnRecord], float]:
            async with s.client() as client:
                turns = [run_turn(client, sid, long_text(sid), timeout=90) for sid in sessions]
                tasks = [asyncio.ensure_future(t) for t in turns]

                def streaming() -> bool:
                    return any(s.provider.requests) and _tokens(s, sessions) >= 4

                return await _kill_and_restart(s, first, second, tasks, streaming, poll=0.05)

        records, restarted = _run(scenario())
        row.requests = len(s.provider.requests)
        row.recovery_s = max(r.finished for r in records) - restarted
        return row.fill(redis.Redis.from_url(redis_url), records)


async def _kill_and_restart(
    s: Stack[FakeProviderServer],
    first: WorkerProcess,
    second: WorkerProcess,
    tasks: Sequence[asyncio.Future[TurnRecord]],
    ready: Callable[[], bool],
    *,
    poll: float,
    settle: float = 0.0,
) -> tuple[list[TurnRecord], float]:
    """Once ``ready`` (plus ``settle`` s), kill ``first`` and start ``second``.

    Returns the turns' records and when the second worker was up. A turn that fails before
    then (its client could not reach Redis) fails the scenario at once, with its error, where
    ``ready`` might never come.
    """
    while not ready():
        errors = (task.exception() for task in tasks if task.done())
        if error := next((e for e in errors if e is not None), None):
            raise error
        await asyncio.sleep(poll)
    await asyncio.sleep(settle)
    first.kill()
    await asyncio.to_thread(s.start, second)
    restarted = time.monotonic()
    return list(await asyncio.gather(*tasks)), restarted


def _tokens(s: Stack[FakeProviderServer], sessions: list[str]) -> int:
    client = redis.Redis.from_url(s.redis_url)
    try:
        return sum(int(client.xlen(events_stream_key(sid))) for sid in sessions)
    finally:
        client.close()


def summarizing_history(turns: int = 12) -> list[dict[str, Any]]:
    """About 2,400 tokens of history: over the tiny model's hard threshold on the first turn."""
    history: list[dict[str, Any]] = []
    for n in range(turns):
        words = " ".join(f"{w}{n}" for w in WORDS * 8)
        history.append({"role": "user", "content": f"Question {n}: {words}"})
        history.append({"role": "assistant", "content": f"Answer {n}: {words}"})
    return history


def kill_summarizing(workdir: Path, redis_url: str, broker_url: str | None = None) -> Row:
    """SIGKILL a worker while ``compress_session`` waits on the summarizing model."""
    row = Row("kill -9 while summarizing", broker_name(broker_url))
    purge_queues(broker_url)
    env = {"TOKENWINDOW_SUMMARIZER_MODEL": BIG_MODEL, "TOKENWINDOW_PROVIDER_TIMEOUT_SECONDS": "30"}
    with stack(workdir, redis_url, broker_url=broker_url, **env) as s:
        s.provider.inject(Fault.hang(seconds=30))  # the summary request hangs until the kill
        first, second = s.worker(), s.worker(start=False)
        sid = new_session("kill-summary")

        async def scenario() -> tuple[list[TurnRecord], float]:
            async with s.client() as client:
                task = asyncio.ensure_future(
                    run_turn(
                        client,
                        sid,
                        "what did we decide?",
                        TINY_MODEL,
                        history=summarizing_history(),
                        timeout=90,
                    )
                )

                def summarizing() -> bool:
                    return bool(s.provider.requests)

                return await _kill_and_restart(
                    s, first, second, [task], summarizing, poll=0.05, settle=0.5
                )

        records, restarted = _run(scenario())
        client = redis.Redis.from_url(redis_url)
        row.requests = len(s.provider.requests)
        row.recovery_s = records[0].finished - restarted
        row.fill(client, records)
        summarized = [
            e for e in _events(client, sid) if e["type"] == EventType.COMPRESSION_COMPLETED
        ]
        if not any(e.get("summarized") for e in summarized):
            row.problems.append("no LLM summary was applied after the restart")
        row.note = f"{len(summarized)} compression(s) completed"
        return row


def _events(client: redis.Redis, session_id: str) -> list[dict[str, Any]]:
    import json

    return [json.loads(f[b"event"]) for _, f in client.xrange(events_stream_key(session_id))]


def kill_ingesting(
    workdir: Path, redis_url: str, broker_url: str | None = None, *, sessions: int = 12
) -> Row:
    """SIGKILL the fast-queue worker while it appends long resent histories (slow ingest).

    As in the Procfile, another worker serves completions and summaries; it stays up.
    """
    row = Row("kill -9 while ingesting", broker_name(broker_url))
    purge_queues(broker_url)
    history = [
        {"role": "user" if n % 2 == 0 else "assistant", "content": f"message {n} {WORDS[n % 12]}"}
        for n in range(4_000)
    ]
    with stack(workdir, redis_url, broker_url=broker_url) as s:
        s.worker(queues=(QUEUE_COMPLETIONS, QUEUE_SUMMARIZATION))
        first, second = s.worker(queues=(QUEUE_FAST,)), s.worker(queues=(QUEUE_FAST,), start=False)
        ids = [new_session("kill-ingest") for _ in range(sessions)]
        probe = redis.Redis.from_url(redis_url)
        before = _started(probe)

        async def scenario() -> tuple[list[TurnRecord], float]:
            async with s.client() as client:
                tasks = [
                    asyncio.ensure_future(
                        run_turn(client, sid, long_text(sid), history=history, timeout=90)
                    )
                    for sid in ids
                ]

                def ingesting() -> bool:
                    return _started(probe) - before >= 2

                return await _kill_and_restart(s, first, second, tasks, ingesting, poll=0.01)

        records, restarted = _run(scenario())
        row.requests = len(s.provider.requests)
        row.generations = generation_attempts(probe, records)
        row.recovery_s = max(r.finished for r in records) - restarted
        row.note = f"{_started(probe) - before} ingests started for {sessions} turns"
        return row.fill(probe, records)


# --- provider faults ------------------------------------------------------------------------------
PROVIDER_FAULT_ENV = {"TOKENWINDOW_PROVIDER_TIMEOUT_SECONDS": "2"}
"""The provider faults share one stack; a provider that hangs is given up on after 2 s."""
SETTLE_SECONDS = 0.3


@contextlib.contextmanager
def provider_fault_stack(workdir: Path, redis_url: str) -> Iterator[Stack[FakeProviderServer]]:
    """One fake provider and one worker for every provider fault, one fault after another."""
    with stack(workdir, redis_url, **PROVIDER_FAULT_ENV) as s:
        s.worker()
        yield s


def provider_faults(workdir: Path, redis_url: str) -> list[Row]:
    """Every provider fault on one stack (``make chaos``)."""
    with provider_fault_stack(workdir, redis_url) as s:
        return [
            provider_fault(s, redis_url, name, **spec) for name, spec in PROVIDER_FAULTS.items()
        ]


def provider_fault(
    s: Stack[FakeProviderServer],
    redis_url: str,
    name: str,
    faults: list[Fault],
    *,
    turns: int = 3,
    model: str = BIG_MODEL,
    history: list[dict[str, Any]] | None = None,
    configure: dict[str, Any] | None = None,
) -> Row:
    """Queue ``faults`` for the next provider requests, then run ``turns`` turns at once.

    The stack may have served another fault: its worker finishes that one's tasks first (a
    background compression must not reach the provider during this one), then the fake starts
    afresh.
    """
    row = Row(name)
    store = redis.Redis.from_url(redis_url)
    _wait_settled(store)
    s.provider.reset()
    s.provider.configure(**(configure or {}))
    s.provider.inject(*faults)
    sessions = [new_session("fault") for _ in range(turns)]

    async def scenario() -> list[TurnRecord]:
        async with s.client() as client:
            return list(
                await asyncio.gather(
                    *(
                        run_turn(client, sid, long_text(sid), model, history=history)
                        for sid in sessions
                    )
                )
            )

    start = time.monotonic()
    records = _run(scenario())
    row.requests = len(s.provider.requests)
    row.recovery_s = max((r.finished for r in records), default=start) - start
    row.fill(store, records)
    codes = sorted({r.code for r in records if r.code})
    row.note = f"codes: {', '.join(codes)}" if codes else ""
    return row


def _wait_settled(store: redis.Redis, timeout: float = 60.0) -> None:
    """Until the broker holds no task, queued or taken (kombu's ``unacked`` hash), for a while."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        busy = store.hlen("unacked") or any(store.llen(queue) for queue in QUEUES)
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= SETTLE_SECONDS:
            return
        time.sleep(0.05)
    raise TimeoutError(f"the worker still had tasks after {timeout:g} s")


def context_history() -> list[dict[str, Any]]:
    """About 2,300 tokens: fits our estimate of the 4,000-token model, not the provider's 2,000."""
    return [
        {"role": "user" if n % 2 == 0 else "assistant", "content": " ".join(WORDS * 15)}
        for n in range(12)
    ]


PROVIDER_FAULTS: dict[str, dict[str, Any]] = {
    "429 with Retry-After": {"faults": [Fault.error(429, retry_after=1)] * 2},
    "500": {"faults": [Fault.error(500)] * 2},
    "503": {"faults": [Fault.error(503)] * 2},
    "529 overloaded": {"faults": [Fault.error(529)] * 2},
    "stream stops halfway": {"faults": [Fault.drop(after_chunks=4)] * 2},
    "hang past the timeout": {
        "faults": [Fault.hang(seconds=20), Fault.hang(seconds=20, after_chunks=3)],
    },
    "auth error (401)": {"faults": [Fault.error(401)] * 3},
    "context length below ours": {
        "faults": [],
        "turns": 2,
        "model": ESTIMATED_MODEL,
        "history": context_history(),
        "configure": {"context_limit": 2_000},
    },
}
EXPECTED_FAILURES = {"auth error (401)": "provider_auth"}
"""Faults whose right outcome is a clear ``turn_failed`` (with this code), not a retry."""


# --- Redis faults ---------------------------------------------------------------------------------
def redis_restart(workdir: Path) -> Row:
    """Kill and restart a private Redis (no persistence): workers reconnect, new turns work."""
    row = Row("redis restart (no persistence)")
    with RedisServer() as server, stack(workdir, server.url(0)) as s:
        s.worker()
        s.provider.configure(token_delay=0.2)
        before = [new_session("before") for _ in range(2)]

        async def first_turns() -> list[TurnRecord]:
            async with s.client() as client:
                done = await run_sessions(client, before[:1], 1)
                inflight = asyncio.ensure_future(
                    run_turn(client, before[1], long_text(before[1]), timeout=10)
                )
                while _tokens(s, before[1:]) < 3:
                    await asyncio.sleep(0.05)
                server.restart()
                return [*done, await inflight]

        earlier = _run(first_turns())
        restarted = time.monotonic()
        worker = s.workers[0]
        time.sleep(2)
        exited = worker.process is not None and worker.process.poll() is not None
        if exited:  # as a process supervisor (compose, systemd, Procfile runner) would
            s.worker()
        s.provider.configure(token_delay=0.0)
        after = [new_session("after") for _ in range(3)]

        async def new_turns() -> list[TurnRecord]:
            async with s.client() as client:
                return await run_sessions(client, after, 2, timeout=90)

        records = _run(new_turns())
        client = redis.Redis.from_url(server.url(0))
        row.recovery_s = max(r.finished for r in records) - restarted
        row.fill(client, records)
        kept = sum(bool(client.exists(f"tw:{{{sid}}}:session")) for sid in before)
        row.note = (
            f"before the restart: {len(earlier)} turns ({earlier[1].status} in flight); "
            f"sessions kept {kept}/{len(before)}; worker "
            + ("exited on broker loss and was restarted" if exited else "reconnected by itself")
        )
        row.requests = len(s.provider.requests)
        return row


def redis_pause(workdir: Path, seconds: float = 30.0) -> Row:
    """Freeze a private Redis with SIGSTOP mid-stream, submit more turns, then SIGCONT."""
    row = Row(f"redis unreachable {seconds:g} s")
    with RedisServer() as server, stack(workdir, server.url(0), **LONG_LIMITS) as s:
        s.worker()
        s.provider.configure(token_delay=0.1)
        first = [new_session("inflight") for _ in range(2)]
        late = [new_session("late") for _ in range(2)]
        resumed: list[float] = []

        async def scenario() -> list[TurnRecord]:
            async with s.client() as client:
                tasks = [
                    asyncio.ensure_future(
                        run_turn(client, sid, long_text(sid), timeout=seconds + 90)
                    )
                    for sid in first
                ]
                while _tokens(s, first) < 6:
                    await asyncio.sleep(0.05)
                server.pause()
                try:
                    await asyncio.sleep(seconds)
                finally:
                    server.resume()
                resumed.append(time.monotonic())
                tasks += [
                    asyncio.ensure_future(run_turn(client, sid, long_text(sid), timeout=90))
                    for sid in late
                ]
                return list(await asyncio.gather(*tasks))

        records = _run(scenario())
        row.recovery_s = max(r.finished for r in records) - resumed[0]
        row.requests = len(s.provider.requests)
        return row.fill(redis.Redis.from_url(server.url(0)), records)


def slow_subscriber(workdir: Path, *, reply_words: int = 15_000, maxlen: int = 200) -> Row:
    """A pub/sub subscriber that never reads: Redis drops it; the worker and others go on."""
    row = Row("pub/sub subscriber never reads")
    limit = "pubsub 65536 16384 1"
    with (
        RedisServer("--client-output-buffer-limit", limit) as server,
        stack(workdir, server.url(0), TOKENWINDOW_STREAM_MAXLEN=str(maxlen), **LONG_LIMITS) as s,
    ):
        s.worker()
        loud, other = new_session("loud"), new_session("other")
        # Long words: more bytes than the kernel's socket buffers can hide from Redis.
        s.provider.queue_replies(" ".join(f"{WORDS[n % 12] * 40}{n}" for n in range(reply_words)))
        stalled = socket.socket()
        stalled.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
        )  # before connect: small window
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"CLIENT SETNAME stalled\r\n")
        stalled.sendall(f"SUBSCRIBE tw:{{{loud}}}:channel\r\n".encode())
        client = redis.Redis.from_url(server.url(0))

        async def scenario() -> list[TurnRecord]:
            async with s.client() as tw:
                talk = asyncio.ensure_future(run_turn(tw, loud, "talk a lot", timeout=120))
                while not s.provider.requests:  # the long canned reply goes to the loud session
                    await asyncio.sleep(0.02)
                quiet = await run_turn(tw, other, long_text(other), timeout=120)
                return [await talk, quiet]

        start = time.monotonic()
        records = _run(scenario())
        row.recovery_s = max(r.finished for r in records) - start
        names = [c.get("name") for c in client.client_list()]
        length = int(client.xlen(events_stream_key(loud)))
        stalled.close()
        row.fill(client, records[1:])  # the loud turn's stream is trimmed by design
        row.sent, row.completed = len(records), sum(r.status == "completed" for r in records)
        row.note = (
            f"stalled subscriber {'still connected' if 'stalled' in names else 'disconnected'}; "
            f"stream length {length} (cap ~{maxlen}) after {reply_words} tokens"
        )
        if "stalled" in names:
            row.problems.append("the stalled subscriber was not disconnected")
        if length > maxlen + 200:
            row.problems.append(f"stream length {length} is not capped near {maxlen}")
        return row


# --- load -----------------------------------------------------------------------------------------
STREAM_PACE_SECONDS = 0.02
"""A realistic provider: 50 chunks a second."""


def load(
    workdir: Path,
    redis_url: str,
    *,
    sessions: int = 1_000,
    turns: int = 5,
    parallel: int = 200,
    broker_url: str | None = None,
) -> Row:
    """Many sessions against a provider that streams at 20 ms a chunk, turns served by one
    threads-pool worker as the Procfile runs them."""
    row = Row(f"load {sessions} sessions x {turns} turns", broker_name(broker_url))
    purge_queues(broker_url)
    with stack(workdir, redis_url, broker_url=broker_url) as s:
        s.provider.configure(token_delay=STREAM_PACE_SECONDS)
        s.worker(pool="threads", concurrency=parallel)
        ids = [new_session("load") for _ in range(sessions)]

        async def scenario() -> list[TurnRecord]:
            async with s.client() as client:
                return await run_sessions(client, ids, turns, parallel=parallel, timeout=300)

        start = time.monotonic()
        records = _run(scenario())
        elapsed = time.monotonic() - start
        row.requests = len(s.provider.requests)
        row.fill(redis.Redis.from_url(redis_url), records)
        latencies = [r.latency for r in records if r.status == "completed"]
        row.note = (
            f"{len(records) / elapsed:.1f} turns/s, p99 latency {p99(latencies):.2f} s, "
            f"{elapsed:.1f} s in all, {STREAM_PACE_SECONDS * 1000:.0f} ms a chunk"
        )
        return row


def kill_under_load(
    workdir: Path,
    redis_url: str,
    *,
    streams: int = 200,
    broker_url: str | None = None,
) -> Row:
    """SIGKILL the LLM worker while ``streams`` replies stream at 20 ms a chunk.

    As in the Procfile, one threads worker serves the fast queue and another the completions:
    the killed one still receives completions while most streams run.
    """
    row = Row(f"kill -9 with {streams} streams in flight", broker_name(broker_url))
    purge_queues(broker_url)
    with stack(workdir, redis_url, broker_url=broker_url) as s:
        s.provider.configure(token_delay=STREAM_PACE_SECONDS)
        s.worker(pool="threads", concurrency=8, queues=(QUEUE_FAST,))
        llm = functools.partial(
            s.worker, pool="threads", concurrency=streams, queues=(QUEUE_COMPLETIONS,)
        )
        first, second = llm(), llm(start=False)
        sessions = [new_session("kill-load") for _ in range(streams)]

        async def scenario() -> tuple[list[TurnRecord], float]:
            async with s.client() as client:
                turns = [run_turn(client, sid, long_text(sid), timeout=180) for sid in sessions]
                tasks = [asyncio.ensure_future(t) for t in turns]

                def half_streaming() -> bool:
                    return len(s.provider.requests) >= streams // 2

                return await _kill_and_restart(s, first, second, tasks, half_streaming, poll=0.05)

        records, restarted = _run(scenario())
        row.requests = len(s.provider.requests)
        row.recovery_s = max(r.finished for r in records) - restarted
        return row.fill(redis.Redis.from_url(redis_url), records)


def kill_streaming_quorum(workdir: Path, redis_url: str) -> Row:
    """``kill_streaming`` on a private RabbitMQ whose task queues are quorum queues."""
    node = RabbitNode(workdir).start()
    try:
        return kill_streaming(
            workdir, redis_url, node.url(), TOKENWINDOW_BROKER_QUORUM_QUEUES="true"
        )
    finally:
        node.stop()


# --- Sentinel failover ----------------------------------------------------------------------------
SUBMIT_RETRY_SECONDS = 60.0
"""How long a caller keeps resubmitting a turn (same turn id) while Redis fails over."""
BEHIND_STRANDED_SECONDS = 3.0
"""How long a turn queued behind one that got no terminal event is waited for: it cannot start
before that head is evicted as stale, minutes later (the head's task message was lost)."""


async def _submit_until_taken(
    client: TokenManagementClient, session_id: str, text: str, turn_id: str
) -> None:
    """What a careful producer does: a submit that raised was not acknowledged, so send it
    again under the same turn id (ingest is idempotent per turn id)."""
    deadline = time.monotonic() + SUBMIT_RETRY_SECONDS
    while True:
        try:
            messages = [{"role": "user", "content": text}]
            await client.submit_turn(session_id, messages, BIG_MODEL, turn_id=turn_id)
            return
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _failover_turns(
    client: TokenManagementClient, session_id: str, turns: int, timeout: float
) -> list[TurnRecord]:
    records: list[TurnRecord] = []
    for n in range(turns):
        record = TurnRecord(session_id, uuid.uuid4().hex, f"turn {n} of {session_id}")
        record.started = time.monotonic()
        behind_stranded = any(r.status == "lost" for r in records)
        records.append(record)
        await _submit_until_taken(client, session_id, record.text, record.turn_id)
        wait = BEHIND_STRANDED_SECONDS if behind_stranded else timeout
        try:
            event = await client.wait_for_turn(session_id, record.turn_id, timeout=wait)
        except TimeoutError:
            continue
        record.finished = time.monotonic()
        record.status = "completed" if event["type"] == EventType.TURN_COMPLETED else "failed"
        record.code = event.get("code")
    return records


async def _supervise(
    s: Stack[FakeProviderServer], restarted: list[float], poll: float = 0.5
) -> None:
    """Start a fresh worker when the last one exited, as compose's ``restart:`` or ECS would.

    kombu can end a worker with an unrecoverable error while it closes a channel whose broker
    connection is already gone; a supervisor's restart is the deployment's answer to that.
    """
    while True:
        last = s.workers[-1]
        if last.process is not None and last.process.poll() is not None:
            restarted.append(time.monotonic())
            await asyncio.to_thread(s.worker)
        await asyncio.sleep(poll)


def _wait_promotion(topology: SentinelTopology, old_port: int, timeout: float = 60.0) -> float:
    """When the sentinels first name a master other than the killed one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(RuntimeError):
            if topology.master_port() != old_port:
                return time.monotonic()
        time.sleep(0.05)
    raise TimeoutError(f"no replica was promoted within {timeout} s")


@dataclass
class FailoverRow(Row):
    """A failover row, split by what the client had seen when the master died."""

    acknowledged_missing: int = 0
    """Turns the client saw complete that are not in the promoted replica's transcript."""
    stranded: int = 0
    """Turns submitted around the kill that never reached a terminal event."""
    new_completed: int = 0
    new_sent: int = 0


def sentinel_failover(
    workdir: Path, *, sessions: int = 5, turns: int = 4, timeout: float = 45.0
) -> FailoverRow:
    """SIGKILL the master Sentinel watches halfway through ``sessions * turns`` turns.

    State and broker both live on that master (kombu's ``sentinel://`` transport). A replica
    is promoted; the workers, the client and the broker follow it. Then every turn the client
    saw complete must be in the new master's transcript, and new sessions' turns must work.
    """
    row = FailoverRow("sentinel failover (kill -9 master)", "redis+sentinel")
    topology = start_sentinel(workdir)
    env = dict(topology.env)
    try:
        with stack(workdir, env.pop("REDIS_URL"), **env) as s:
            s.worker()
            s.provider.configure(token_delay=0.05)
            store = sync_redis(get_settings())
            ids = [new_session("failover") for _ in range(sessions)]
            fresh = [new_session("after") for _ in range(sessions)]
            killed: list[float] = []
            promoted: list[float] = []
            restarted: list[float] = []

            async def scenario() -> tuple[list[TurnRecord], list[TurnRecord]]:
                async with s.client() as client:
                    runs = [_failover_turns(client, sid, turns, timeout) for sid in ids]
                    tasks = [asyncio.ensure_future(r) for r in runs]
                    while await asyncio.to_thread(_started, store) < sessions * turns // 2:
                        await asyncio.sleep(0.05)
                    old = topology.master.port
                    topology.master.kill()
                    killed.append(time.monotonic())
                    promoted.append(await asyncio.to_thread(_wait_promotion, topology, old))
                    watch = asyncio.ensure_future(_supervise(s, restarted))
                    try:
                        first = [r for rs in await asyncio.gather(*tasks) for r in rs]
                        after = [_failover_turns(client, sid, 1, timeout) for sid in fresh]
                        second = [r for rs in await asyncio.gather(*after) for r in rs]
                        return first, second
                    finally:
                        watch.cancel()

            records, later = _run(scenario())
            row.fill(store, [*records, *later])
            row.recovery_s = max(r.finished for r in [*records, *later]) - killed[0]
            row.requests = len(s.provider.requests)
            row.acknowledged_missing = sum("missing from the transcript" in p for p in row.problems)
            row.stranded = sum(r.status == "lost" for r in records)
            row.new_sent = len(later)
            row.new_completed = sum(r.status == "completed" for r in later)
            row.note = (
                f"replica promoted {promoted[0] - killed[0]:.1f} s after the kill; "
                f"{row.stranded} of {len(records)} turns around the kill got no terminal event "
                f"within {timeout:g} s ({BEHIND_STRANDED_SECONDS:g} s behind one that got none); "
                f"{row.new_completed}/{row.new_sent} new sessions' turns "
                f"completed; worker restarted {len(restarted)} time(s) after exiting on the "
                "broker's loss"
            )
            return row
    finally:
        for server in reversed(topology.servers):
            server.kill()
