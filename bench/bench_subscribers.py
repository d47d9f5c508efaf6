"""Many subscribers in one process: the client's shared read beside a read per subscription.

``python -m bench subscribers [--sizes 200,500]``. For each N, a publisher process writes one
``token`` event to each of N sessions every 25 ms for 3 s, as a worker flushes (one call of the
service's publish script per flush, every stream in it), on a private redis-server. This
process reads the events three ways, one after the other, each on fresh sessions:

- ours: one ``TokenManagementClient.subscribe`` per session (the client's shared read);
- a read per subscription: one ``XREAD BLOCK`` loop per session, as the client read before;
- plain Redis: one raw redis-py ``XREAD`` over every stream at once, the floor.

Figures: this process's CPU per 1,000 events, p99 delay from publish (the event's ``ts``) to
receipt, the most connections Redis saw, and Redis's own CPU per 1,000 events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any

import redis
import redis.asyncio

from bench.report import Row
from bench.stats import ms, percentile, without_gc_pauses
from bench.streams import read_all
from tests.redis_server import RedisServer
from tokenwindow.client import TokenManagementClient
from tokenwindow.constants import events_stream_key
from tokenwindow.eventlog import KIND_TOKEN, PUBLISH_LUA, encode_event, publish_call
from tokenwindow.events import EventType

SIZES = (200, 500)
QUICK_SIZES = (200,)
FLUSH_SECONDS = 0.025
FLUSHES = 120
"""3 s of a worker's flushes, one event per session each."""
TURN = "t1"
START_SECONDS = 60.0


@dataclass
class Case:
    delays: list[float]
    cpu_seconds: float
    redis_cpu_seconds: float
    connections: int

    @property
    def events(self) -> int:
        return len(self.delays)


Reader = Callable[[str, list[str]], Awaitable[list[float]]]
"""Reads FLUSHES events of each session; returns seconds from publish to receipt, per event."""


def publish(url: str, sessions: list[str], go: ProcessEvent) -> None:
    """Child process: every FLUSH_SECONDS, one event per session in one script call."""
    client = redis.Redis.from_url(url)
    script = client.register_script(PUBLISH_LUA)
    go.wait(START_SECONDS)
    start = time.monotonic()
    for flush in range(FLUSHES):
        time.sleep(max(0.0, start + flush * FLUSH_SECONDS - time.monotonic()))
        groups = [
            (s, TURN, [(KIND_TOKEN, encode_event(s, TURN, EventType.TOKEN, {"text": "w"}), "w")])
            for s in sessions
        ]
        keys, args = publish_call(10_000, 600, groups)
        script(keys=keys, args=args)
    client.close()


async def through_client(url: str, sessions: list[str]) -> list[float]:
    async with TokenManagementClient(url) as client:

        async def one(session_id: str) -> list[float]:
            out = []
            async for event in client.subscribe(session_id, "0", timeout=START_SECONDS):
                out.append(time.time() - event["ts"])
                if len(out) == FLUSHES:
                    break
            return out

        return _joined(await asyncio.gather(*(one(s) for s in sessions)))


async def read_per_subscription(url: str, sessions: list[str]) -> list[float]:
    client = redis.asyncio.Redis.from_url(
        url, decode_responses=True, max_connections=len(sessions) + 1
    )
    deadline = time.monotonic() + START_SECONDS
    try:
        parts = [_delays(client, [s], deadline) for s in sessions]
        return _joined(await asyncio.gather(*parts))
    finally:
        await client.aclose()


async def read_all_at_once(url: str, sessions: list[str]) -> list[float]:
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    try:
        return await _delays(client, sessions, time.monotonic() + START_SECONDS)
    finally:
        await client.aclose()


async def _delays(client: redis.asyncio.Redis, sessions: list[str], deadline: float) -> list[float]:
    """FLUSHES events of each session, read with one plain XREAD at a time over all of them."""
    cursors = {events_stream_key(s): "0" for s in sessions}
    left = dict.fromkeys(cursors, FLUSHES)
    out: list[float] = []
    async for arrival, key, _, fields in read_all(client, cursors, deadline):
        out.append(arrival - json.loads(fields["event"])["ts"])
        left[key] -= 1
        if not left[key]:
            del cursors[key]
    return out


def _joined(parts: list[list[float]]) -> list[float]:
    return [delay for part in parts for delay in part]


def measure(server: RedisServer, tag: str, n: int, reader: Reader) -> Case:
    url = server.url()
    sessions = [f"{tag}{n}-{i}" for i in range(n)]
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    publisher = context.Process(target=publish, args=(url, sessions, go), daemon=True)
    publisher.start()
    admin = redis.Redis.from_url(url)
    peak = 0

    async def read() -> list[float]:
        nonlocal peak
        task = asyncio.create_task(reader(url, sessions))
        await asyncio.sleep(0.5)  # every reader is waiting before the first flush
        go.set()
        while not task.done():
            peak = max(peak, int(admin.info("clients")["connected_clients"]))
            await asyncio.wait({task}, timeout=0.25)
        return task.result()

    redis_cpu = _redis_cpu(admin)
    cpu = time.process_time()
    try:
        with without_gc_pauses():
            delays = asyncio.run(read())
    finally:
        publisher.join(START_SECONDS)
    readers = peak - 2  # this measurement's own connection and the publisher's
    case = Case(delays, time.process_time() - cpu, _redis_cpu(admin) - redis_cpu, readers)
    admin.flushdb()
    admin.close()
    return case


def _redis_cpu(admin: redis.Redis) -> float:
    info: Any = admin.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run(args: argparse.Namespace) -> list[Row]:
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    out: list[Row] = []
    with RedisServer() as server:
        for n in sizes:
            ours = measure(server, "client", n, through_client)
            each = measure(server, "each", n, read_per_subscription)
            floor = measure(server, "raw", n, read_all_at_once)
            out += rows(n, ours, each, floor)
    return out


def rows(n: int, ours: Case, each: Case, floor: Case) -> list[Row]:
    expected = n * FLUSHES
    note = f"{n} sessions x {FLUSHES} events, a flush every {FLUSH_SECONDS * 1000:.0f} ms"
    out = []
    measured = {"plain XREAD": floor, "client.subscribe": ours, "a read per subscription": each}
    for name, case in measured.items():
        if case.events != expected:
            raise RuntimeError(f"{name} at N={n}: {case.events} of {expected} events")
    for name, case in list(measured.items())[1:]:
        out += [
            Row(
                "subscribers",
                f"N={n} {name}: CPU / 1k events",
                f"{case.cpu_seconds * 1000 / case.events * 1000:.1f} ms",
                f"{floor.cpu_seconds * 1000 / floor.events * 1000:.1f} ms plain XREAD",
                f"{case.cpu_seconds / floor.cpu_seconds:.1f}x",
                note,
            ),
            Row(
                "subscribers",
                f"N={n} {name}: p99 delay",
                ms(percentile(case.delays, 99)),
                f"{ms(percentile(floor.delays, 99))} plain XREAD",
                f"{percentile(case.delays, 99) / percentile(floor.delays, 99):.1f}x",
                "publish to receipt",
            ),
            Row(
                "subscribers",
                f"N={n} {name}: Redis",
                f"{case.connections} conn., {case.redis_cpu_seconds / case.events * 1e6:.0f} "
                "us CPU/event",
                f"{floor.connections} conn., {floor.redis_cpu_seconds / floor.events * 1e6:.0f} "
                "us plain XREAD",
                f"{case.redis_cpu_seconds / floor.redis_cpu_seconds:.1f}x",
                "the readers' connections at the peak; Redis CPU includes publishing",
            ),
        ]
    return out
