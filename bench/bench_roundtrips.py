"""Redis round trips per turn under the soft threshold, and first-token overhead.

``python -m bench roundtrips``. A private redis-server (so its counters see only this run)
with the Procfile's workers as written and a bare Celery no-op worker on the same broker.

Counting (``bench.monitor``): MONITOR records every command while, in turn, nothing runs (the
workers' idle polling, subtracted from the other phases by duration), M turns run one after
another (each a fresh session, a 22-chunk reply, streamed to the caller through
``client.create_completion``), and M bare no-op tasks make the round trip ``send_task`` +
``result.get()``. Round trips are split into the turn's own, the streamed events among them
(trips carrying a ``token`` event) and Celery's (broker, events, results); commands are also
read from ``INFO commandstats`` deltas as a check.

First-token overhead: submit to first token through the pipeline (``create_completion``),
minus the time to first token of a direct ``litellm.completion(stream=True)`` to the same fake,
divided by the bare no-op round trip, all at p50, with no MONITOR attached; the three are
interleaved so a busy machine slows them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.monitor import Monitor, Phase, Trip, command_counts
from bench.noop_app import NOOP_QUEUE, RoundTrips, round_trips
from bench.procfile import ProcfileWorkers
from bench.report import Row
from bench.stack import MODEL, BenchStack
from bench.stats import ms, percentile
from tests.redis_server import RedisServer, commandstats
from tests.stack import fake_model
from tokenwindow.client import TokenManagementClient
from tokenwindow.constants import QUEUES
from tokenwindow.settings import get_settings

CHUNKS = 22
TIMEOUT_SECONDS = 120.0
IDLE_SECONDS = 5.0
WARM_UP = 6
TOKEN_MARK = '"type":"token"'
CLIENT_NAME = "tokenwindow-bench-client"
USER = {"role": "user", "content": "What time does the harbour market open on Sundays?"}


def say(text: str) -> None:
    print(f"  roundtrips: {text}", file=sys.stderr, flush=True)


def reply(tag: str) -> str:
    return " ".join(f"{tag}w{i}" for i in range(CHUNKS))


@dataclass(frozen=True)
class Window:
    """What MONITOR and ``INFO commandstats`` saw during one phase."""

    phase: Phase
    seconds: float
    stats: Counter[str]


@dataclass(frozen=True)
class Counts:
    """Per unit (a turn, or a no-op round trip), the workers' idle polling taken out."""

    service: float
    """The service's own trips in its workers, besides the streamed events."""
    streamed: float
    client: float
    """The client's: ``turn_queued``, reading the stream (Celery's sends count as Celery's)."""
    celery: float
    commands: float
    stats_commands: float
    top: str

    @property
    def trips(self) -> float:
        return self.service + self.streamed + self.client + self.celery


def counts(window: Window, idle: Window, n: int) -> Counts:
    queues = frozenset((*QUEUES, NOOP_QUEUE))
    scale = window.seconds / idle.seconds
    own, celery = window.phase.split(queues)
    idle_own, idle_celery = idle.phase.split(queues)
    client = [t for t in own if t.client == CLIENT_NAME]
    streamed = [t for t in own if t.client != CLIENT_NAME and is_streamed(t)]
    service = len(own) - len(client) - len(streamed) - len(idle_own) * scale
    commands = command_counts(window.phase.trips)
    idle_commands = command_counts(idle.phase.trips)
    commands.subtract({name: calls * scale for name, calls in idle_commands.items()})
    top = ", ".join(f"{name} {calls / n:.1f}" for name, calls in commands.most_common(5))
    return Counts(
        service=service / n,
        streamed=len(streamed) / n,
        client=len(client) / n,
        celery=(len(celery) - len(idle_celery) * scale) / n,
        commands=commands.total() / n,
        stats_commands=(window.stats.total() - idle_commands.total() * scale) / n,
        top=top,
    )


def is_streamed(trip: Trip) -> bool:
    return any(TOKEN_MARK in arg.replace('\\"', '"') for c in trip.commands for arg in c)


# --- the work being counted -------------------------------------------------------------------
async def turn(client: TokenManagementClient, session_id: str) -> tuple[float, str]:
    """One streamed turn: (seconds to its first token, its whole text)."""
    start = time.perf_counter()
    first = 0.0
    parts = []
    async for text in await client.create_completion(
        session_id, [USER], MODEL, stream=True, timeout=TIMEOUT_SECONDS
    ):
        first = first or time.perf_counter() - start
        parts.append(text)
    return first, "".join(parts)


async def sequential_turns(stack: BenchStack, n: int, tag: str) -> list[float]:
    """N turns one after another, each on a fresh session; checks every reply."""
    expected = [reply(f"{tag}{i}") for i in range(n)]
    stack.provider.reset()
    stack.provider.queue_replies(*expected)
    firsts = []
    # The name tells MONITOR which trips are the client's; Celery's sends keep a plain URL.
    settings = get_settings().model_copy(update={"broker_url": stack.redis_url})
    named = f"{stack.redis_url}?client_name={CLIENT_NAME}"
    async with TokenManagementClient(named, settings=settings) as client:
        for i, text in enumerate(expected):
            first, got = await turn(client, f"rt-{tag}-{uuid.uuid4().hex[:6]}-{i}")
            if got != text:
                raise RuntimeError(f"turn {i} replied {got!r}, expected {text!r}")
            firsts.append(first)
    return firsts


def direct_first_token(params: dict[str, Any]) -> float:
    """Time to the first streamed chunk of ``litellm.completion`` called here, same fake."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # as the workers: no network
    import litellm

    start = time.perf_counter()
    stream = litellm.completion(messages=[USER], stream=True, **params)
    next(iter(stream))
    elapsed = time.perf_counter() - start
    for _ in stream:
        pass
    return elapsed


async def first_tokens(stack: BenchStack, n: int) -> tuple[list[float], list[float], list[float]]:
    """(through the pipeline, direct litellm, bare round trip), interleaved one of each at a
    time so the three see the same load on a shared machine; the first few warm up."""
    stack.provider.reset()
    params: dict[str, Any] = dict(fake_model(MODEL).litellm_params(stack.provider))
    ours: list[float] = []
    direct: list[float] = []
    bare: list[float] = []
    async with TokenManagementClient() as client:
        with RoundTrips(stack.redis_url, warm_up=0) as trips:
            for i in range(-WARM_UP, n):
                first, _ = await turn(client, f"rt-time-{uuid.uuid4().hex[:6]}-{i}")
                times = (first, direct_first_token(params), trips.time())
                if i >= 0:
                    for kept, value in zip((ours, direct, bare), times, strict=True):
                        kept.append(value)
    return ours, direct, bare


def watch(monitor: Monitor, url: str, name: str, work: Callable[[], object]) -> Window:
    """Run ``work`` as the MONITOR phase ``name``."""
    before = commandstats(url)
    monitor.start(name)
    start = time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    monitor.end(name)
    stats = commandstats(url)
    stats.subtract(before)
    del stats["echo"]  # the markers
    return Window(monitor.phases()[name], seconds, stats)


def measure(stack: BenchStack, server: RedisServer, n: int) -> tuple[Counts, Counts]:
    """Counts per turn and per bare no-op round trip."""
    with Monitor(server.port, stack.dir / "monitor.txt") as monitor:
        idle = watch(monitor, server.url(), "idle", lambda: time.sleep(IDLE_SECONDS))
        turns = watch(
            monitor, server.url(), "turns", lambda: asyncio.run(sequential_turns(stack, n, "count"))
        )
        noop = watch(monitor, server.url(), "noop", lambda: round_trips(server.url(), n, warm_up=0))
    return counts(turns, idle, n), counts(noop, idle, n)


def run(args: argparse.Namespace) -> list[Row]:
    counted, timed = (5, 20) if args.quick else (10, 50)
    with (
        RedisServer() as server,
        BenchStack(server.url()) as stack,
        ProcfileWorkers(stack.env, stack.dir),
    ):
        stack.noop_worker(1)
        say("warm-up")
        asyncio.run(sequential_turns(stack, WARM_UP, "warm"))
        round_trips(server.url(), 0)
        say(f"counting {counted} turns and {counted} no-op round trips under MONITOR")
        ours, noop = measure(stack, server, counted)
        say(f"first-token latency: {timed} x (turn, direct litellm, no-op round trip)")
        firsts, direct, floor = asyncio.run(first_tokens(stack, timed))
    return rows(ours, noop, firsts, direct, floor, counted=counted)


def rows(
    ours: Counts,
    noop: Counts,
    firsts: list[float],
    direct: list[float],
    floor: list[float],
    *,
    counted: int,
) -> list[Row]:
    bare = f"{noop.trips:.1f} bare Celery round trip"
    first, straight, trip = (percentile(v, 50) for v in (firsts, direct, floor))
    overhead = first - straight

    def row(case: str, ours: float, baseline: str, ratio: float | None, note: str) -> Row:
        shown = "-" if ratio is None else f"{ratio:.1f}x"
        return Row("roundtrips", case, f"{ours:.1f}", baseline, shown, note)

    return [
        row(
            "turn's own round trips, besides streamed events",
            ours.service,
            bare,
            ours.service / noop.trips,
            f"goal <= 8; in the workers; mean of {counted} turns under the soft threshold",
        ),
        row(
            "streamed-event round trips",
            ours.streamed,
            f"{CHUNKS} chunks",
            ours.streamed / CHUNKS,
            "trips carrying a token event",
        ),
        row(
            "client's round trips",
            ours.client,
            "-",
            None,
            "create_completion(stream=True): turn_queued and reading the stream",
        ),
        row(
            "Celery's round trips (broker, events, results)",
            ours.celery,
            f"{noop.celery:.1f} bare Celery round trip",
            ours.celery / noop.celery,
            "trips touching only Celery's and kombu's keys; idle polling subtracted",
        ),
        row(
            "round trips end to end",
            ours.trips,
            bare,
            ours.trips / noop.trips,
            "MONITOR; a MULTI..EXEC block or a script is one trip; client included",
        ),
        row(
            "commands end to end",
            ours.commands,
            f"{noop.commands:.1f} bare Celery round trip",
            ours.commands / noop.commands,
            f"INFO commandstats {ours.stats_commands:.1f}; {ours.top}",
        ),
        Row(
            "roundtrips",
            "first-token overhead p50 (first token - direct)",
            ms(overhead),
            f"{ms(trip)} bare Celery round trip",
            f"{overhead / trip:.2f}x",
            f"goal <= 1.5x; {len(firsts)} interleaved runs: first token {ms(first)}, "
            f"direct litellm {ms(straight)}",
        ),
    ]
