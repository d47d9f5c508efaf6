"""Many streaming turns at once through the service, beside the same streams read by raw httpx.

``python -m bench concurrency [--sizes 1,100,200,500]``. For each N, in one run against one
fake OpenAI server (its own process) that streams every reply as exactly 50 chunks, 20 ms
apart: first N concurrent streams read by a plain ``httpx.AsyncClient``, then N turns, one per
fresh session, submitted at once through ``TokenManagementClient`` from this process and read
back in a reader process of its own with one plain ``XREAD`` over every session's stream, as a
consumer in any language reads the documented keys (the cheapest reader, so that it takes as
little as it can of the two cores the service under test runs on; ``python -m bench
subscribers`` compares it with ``client.subscribe``). The service runs as the Procfile's worker
lines, as written, on a private redis-server.

Figures: wall time (first submit to last ``turn_completed``), turn latency (submit to
``turn_completed`` as the subscriber sees it), added delay (the fake records when each chunk
left; the subscriber records when the event carrying it arrived: coalesced events map back to
every chunk they joined), worker memory (RSS and PSS summed over each worker's process tree,
peak of samples), the stream loop's CPU per chunk (its thread alone, scheduler clock: the path
from provider bytes to an event in the session's stream), worker CPU (utime + stime of the
trees, per 1,000 chunks, per-turn work included), Redis commands per turn
(``INFO commandstats`` delta over the run / N), and whether every reply arrived exact. Every
reply is unique, so a lost, repeated or misplaced chunk shows.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import multiprocessing
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

import httpx
import redis.asyncio

from bench.procfile import ProcfileWorkers
from bench.proctree import TreeSampler
from bench.report import Row
from bench.stack import MODEL, BenchStack
from bench.stats import ms, percentile, without_gc_pauses
from bench.streams import read_all
from tests.fakes import FakeProviderProcess
from tests.fakes.behaviour import split_words
from tests.fakes.specs import FAKE_KEY
from tests.redis_server import RedisServer, commandstats
from tokenwindow.client import TokenManagementClient
from tokenwindow.constants import events_stream_key
from tokenwindow.events import EventType, decode_event, is_terminal
from workers.engine import LOOP_THREAD_NAME

SIZES = (1, 100, 200, 500)
QUICK_SIZES = (1, 100)
CHUNKS = 50
CHUNK_SECONDS = 0.020
WARM_UP_TURNS = 8
"""Two per LLM pool process as shipped, so every process has loaded litellm before timing."""
TIMEOUT_SECONDS = 900.0
READER_START_SECONDS = 60.0
WALL_GOAL = 1.5
RSS_GOAL_BYTES = 1.5e9
DELAY_GOAL_SECONDS = 0.050
STREAM_CPU_GOAL_SECONDS = 150e-6
"""Per chunk, provider bytes to an event in the session's stream: the stream loop's CPU."""
USER = {"role": "user", "content": "Tell me about the harbour, the lighthouse and the market."}


def reply(tag: str) -> str:
    """50 words unique to this reply; the fake streams one word per chunk."""
    return " ".join(f"{tag}w{i}" for i in range(CHUNKS))


def say(text: str) -> None:
    print(f"  concurrency: {text}", file=sys.stderr, flush=True)


@dataclass
class Stream:
    """What one reader saw of one reply: when it asked, when it ended, each text on arrival."""

    start: float
    end: float
    received: list[tuple[float, str]]
    failure: str | None = None
    stamped: list[float] = field(default_factory=list)
    """Through the service: each received event's ``ts``, stamped when the worker's flush took
    it, so a chunk's delay splits into provider to flush and flush to reader."""

    @property
    def text(self) -> str:
        return "".join(text for _, text in self.received)


@dataclass
class Run:
    """N streams read one way, and what reading them cost."""

    streams: list[Stream]
    cpu_seconds: float
    """The workers' trees (service), or this process (raw httpx)."""
    reader_cpu_seconds: float = 0.0
    idle_rss: int = 0
    peak_rss: int = 0
    idle_pss: int = 0
    peak_pss: int = 0
    commands: Counter[str] | None = None
    cpu_by_worker: dict[str, float] = field(default_factory=dict)
    """The service's CPU seconds per Procfile process type."""
    stream_cpu_seconds: float = 0.0
    """The stream loops' own CPU (``workers.engine.LOOP_THREAD_NAME``): every chunk's path
    from provider bytes to an event in Redis, and each reply's request and connection."""

    @property
    def wall(self) -> float:
        return max(s.end for s in self.streams) - min(s.start for s in self.streams)

    def latencies(self) -> list[float]:
        return [s.end - s.start for s in self.streams]

    def exact(self, expected: set[str]) -> int:
        """Replies that arrived whole, in order, once each (each reply exists once)."""
        return len(expected.intersection(s.text for s in self.streams if s.failure is None))

    def delays(self, sent: dict[str, float]) -> list[float]:
        """Seconds from each chunk leaving the provider to its arrival at the reader."""
        out = []
        for stream in self.streams:
            for at, text in stream.received:
                for piece in split_words(text):
                    if piece not in sent:
                        raise RuntimeError(f"received {piece!r}, which the provider never sent")
                    out.append(at - sent[piece])
        return out

    def legs(self, sent: dict[str, float]) -> tuple[list[float], list[float]]:
        """Each chunk's delay split at its event's stamp: (provider to the worker's flush,
        flush to the reader)."""
        to_flush, to_reader = [], []
        for stream in self.streams:
            for (at, text), stamp in zip(stream.received, stream.stamped, strict=True):
                for piece in split_words(text):
                    to_flush.append(stamp - sent[piece])
                    to_reader.append(at - stamp)
        return to_flush, to_reader


def sent_times(provider: FakeProviderProcess) -> dict[str, float]:
    """``{chunk text: send time}`` from the fake's log of OpenAI SSE frames."""
    out = {}
    for at, frame in provider.sent():
        delta = json.loads(frame.removeprefix("data: "))["choices"][0]["delta"]
        out[delta["content"]] = at
    return out


# --- the baseline: raw httpx ------------------------------------------------------------------
async def raw_stream(http: httpx.AsyncClient, url: str) -> Stream:
    body = {"model": "gpt-4o", "messages": [USER], "stream": True}
    headers = {"Authorization": f"Bearer {FAKE_KEY}"}
    start = time.time()
    received = []
    async with http.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line.removeprefix("data: "))["choices"]
                text = choices[0]["delta"].get("content") if choices else None
                if text:
                    received.append((time.time(), text))
    return Stream(start, time.time(), received)


async def raw_run(openai_base: str, n: int) -> Run:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, limits=limits) as http:
        url = f"{openai_base}/chat/completions"
        cpu = time.process_time()
        streams = await asyncio.gather(*(raw_stream(http, url) for _ in range(n)))
        return Run(list(streams), time.process_time() - cpu)


# --- the service: the client, the Procfile workers ------------------------------------------
def read_turns(redis_url: str, turns: dict[str, str], ready: Event, out: Connection) -> None:
    """Child process: read every session's events until each turn has ended; send them back."""
    with without_gc_pauses():
        streams = asyncio.run(_read(redis_url, turns, ready))
    out.send(streams)


async def _read(
    redis_url: str, turns: dict[str, str], ready: Event
) -> tuple[dict[str, Stream], float]:
    """One XREAD over all the sessions' streams at once, so reading costs little per event.

    ``client.subscribe`` shares one read among its subscriptions too, but decodes and hands on
    each event: 1.5 to 2 times this reader's CPU per event (``python -m bench subscribers``), which
    on two cores comes out of the service's share. The stream key and entry format are the
    README's contract for consumers (``events_stream_key``, field ``event``).
    """
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    sessions = {events_stream_key(sid): sid for sid in turns}
    cursors = dict.fromkeys(sessions, "0")
    streams = {sid: Stream(0.0, 0.0, []) for sid in turns}
    cpu = time.process_time()
    ready.set()
    try:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        async for now, key, entry_id, fields in read_all(client, cursors, deadline):
            sid = sessions[key]
            event = decode_event(fields["event"], entry_id)
            if event.get("turn_id") != turns[sid]:
                continue
            if event["type"] == EventType.TOKEN:
                streams[sid].received.append((now, event["text"]))
                streams[sid].stamped.append(event["ts"])
            elif is_terminal(event):
                streams[sid].end = now
                if event["type"] == EventType.TURN_FAILED:
                    streams[sid].failure = f"{event.get('code')}: {event.get('message')}"
                del cursors[key]
    finally:
        await client.aclose()
    for key in cursors:
        streams[sessions[key]].failure = f"no terminal event in {TIMEOUT_SECONDS:.0f} s"
    return streams, time.process_time() - cpu


async def submit_all(turns: dict[str, str]) -> dict[str, float]:
    """Submit every turn at once through the client; ``{session: submit time}``.

    The client's connection pool is warm first, as a producer's is once it has served such a
    burst: opening one connection per concurrent submit took this process about half a core
    for half a second at 500, beside the workers under test.
    """
    async with TokenManagementClient() as client:
        await asyncio.gather(*(client.redis.ping() for _ in turns))

        async def submit(session_id: str, turn_id: str) -> float:
            start = time.time()
            await client.submit_turn(session_id, [USER], MODEL, turn_id=turn_id)
            return start

        starts = await asyncio.gather(*(submit(sid, tid) for sid, tid in turns.items()))
    return dict(zip(turns, starts, strict=True))


async def warm_up(n: int) -> None:
    """Turns through every pool process, so none loads litellm while being timed."""
    async with TokenManagementClient() as client:
        sids = [f"warm-{uuid.uuid4().hex[:6]}-{i}" for i in range(n)]
        tids = await asyncio.gather(*(client.submit_turn(sid, [USER], MODEL) for sid in sids))
        await asyncio.gather(
            *(
                client.wait_for_turn(sid, tid, timeout=TIMEOUT_SECONDS)
                for sid, tid in zip(sids, tids, strict=True)
            )
        )


def service_run(stack: BenchStack, workers: ProcfileWorkers, n: int) -> Run:
    """N turns at once, read by a reader process started (and listening) beforehand."""
    prefix = f"cc{n}-{uuid.uuid4().hex[:6]}"
    turns = {f"{prefix}-{i}": uuid.uuid4().hex for i in range(n)}
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    receive, send = context.Pipe(duplex=False)
    reader = context.Process(
        target=read_turns, args=(stack.redis_url, turns, ready, send), daemon=True
    )
    reader.start()
    try:
        if not ready.wait(READER_START_SECONDS):
            raise RuntimeError("the reader process did not start")
        sampler = TreeSampler(workers.pids, thread=LOOP_THREAD_NAME)
        idle_rss, idle_pss = sampler.idle_memory()
        before = commandstats(stack.redis_url)
        with sampler:
            with without_gc_pauses():
                starts = asyncio.run(submit_all(turns))
            if not receive.poll(TIMEOUT_SECONDS + READER_START_SECONDS):
                raise RuntimeError("the reader process sent nothing back")
            streams, reader_cpu = receive.recv()
        commands = commandstats(stack.redis_url)
    finally:
        reader.join(timeout=READER_START_SECONDS)
        if reader.is_alive():
            reader.kill()
    commands.subtract(before)
    for sid, stream in streams.items():
        stream.start = starts[sid]
    return Run(
        list(streams.values()),
        sampler.cpu_seconds,
        reader_cpu,
        idle_rss,
        sampler.peak_rss,
        idle_pss,
        sampler.peak_pss,
        commands,
        {name: sampler.cpu_by_leader.get(pid, 0.0) for name, pid in workers.roots.items()},
        sampler.thread_cpu_seconds,
    )


def prepare(provider: FakeProviderProcess, tag: str, n: int) -> set[str]:
    """Fresh provider state with N unique replies queued; returns them."""
    replies = [reply(f"{tag}r{i}") for i in range(n)]
    provider.reset()
    provider.configure(token_delay=CHUNK_SECONDS)
    provider.queue_replies(*replies)
    return set(replies)


def run(args: argparse.Namespace) -> list[Row]:
    sizes: Sequence[int] = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    spawn = functools.partial(FakeProviderProcess.spawn, record_sends=True)
    out: list[Row] = []
    with RedisServer() as server, BenchStack(server.url(), provider=spawn) as stack:
        provider = stack.provider
        with ProcfileWorkers(stack.env, stack.dir) as workers:
            say(f"Procfile workers up: {', '.join(workers.commands.values())}")
            prepare(provider, "warm", 0)
            asyncio.run(warm_up(WARM_UP_TURNS))
            for n in sizes:
                say(f"N={n}: raw httpx")
                expected_raw = prepare(provider, f"h{n}", n)
                with without_gc_pauses():
                    raw = asyncio.run(raw_run(provider.openai_base, n))
                say(f"N={n}: through the service")
                expected = prepare(provider, f"s{n}", n)
                ours = service_run(stack, workers, n)
                sent = sent_times(provider)
                out += rows(n, ours, raw, sent, (ours.exact(expected), raw.exact(expected_raw)))
                failures = Counter(s.failure for s in ours.streams if s.failure)
                if failures:
                    say(f"N={n}: failed turns {dict(failures)}")
    return out


def rows(n: int, ours: Run, raw: Run, sent: dict[str, float], exact: tuple[int, int]) -> list[Row]:
    case = f"N={n}"
    chunks = n * CHUNKS
    reader_share = ours.reader_cpu_seconds / ours.wall
    wall_note = f"goal <= {WALL_GOAL}x; " if n >= 100 else ""
    stream_goal = f"; goal <= {STREAM_CPU_GOAL_SECONDS * 1e6:.0f} us" if n >= 100 else ""
    wall_note += f"reader process busy {reader_share:.0%} of one core"
    assert ours.commands is not None
    per_turn = ours.commands.total() / n
    top = ", ".join(f"{name} {calls / n:.1f}" for name, calls in ours.commands.most_common(4))
    ours_delay, raw_delay = percentile(ours.delays(sent), 99), percentile(raw.delays(sent), 99)
    to_flush, to_reader = ours.legs(sent)
    split = ", ".join(
        f"{name} {cpu / ours.cpu_seconds:.0%}" for name, cpu in ours.cpu_by_worker.items()
    )
    out = [
        Row(
            "concurrency",
            f"{case} wall",
            f"{ours.wall:.2f} s",
            f"{raw.wall:.2f} s raw httpx",
            f"{ours.wall / raw.wall:.1f}x",
            wall_note,
        ),
        Row(
            "concurrency",
            f"{case} replies exact",
            f"{exact[0]}/{n}",
            f"{exact[1]}/{n}",
            "-",
            f"{n} unique {CHUNKS}-chunk replies, {CHUNK_SECONDS * 1000:.0f} ms a chunk",
        ),
    ]
    for q in (50, 99):
        mine, base = percentile(ours.latencies(), q), percentile(raw.latencies(), q)
        out.append(
            Row(
                "concurrency",
                f"{case} turn p{q}",
                f"{mine:.2f} s",
                f"{base:.2f} s raw httpx",
                f"{mine / base:.1f}x",
                "submit to turn_completed at the reader; request to end of stream",
            )
        )
    return [
        *out,
        Row(
            "concurrency",
            f"{case} p99 added delay",
            ms(ours_delay),
            f"{ms(raw_delay)} raw httpx",
            f"{ours_delay / raw_delay:.1f}x" if raw_delay > 0 else "-",
            f"provider chunk sent to reader receipt; goal <= {ms(DELAY_GOAL_SECONDS)}; "
            f"median {ms(statistics.median(ours.delays(sent)))}; p99 to the worker's flush "
            f"{ms(percentile(to_flush, 99))}, flush to reader {ms(percentile(to_reader, 99))}",
        ),
        Row(
            "concurrency",
            f"{case} worker RSS peak",
            f"{ours.peak_rss / 1e6:.0f} MB",
            f"{ours.idle_rss / 1e6:.0f} MB idle before",
            f"{ours.peak_rss / ours.idle_rss:.2f}x",
            f"sum over the Procfile workers' process trees; goal <= {RSS_GOAL_BYTES / 1e9} GB "
            "at N=500",
        ),
        Row(
            "concurrency",
            f"{case} worker PSS peak",
            f"{ours.peak_pss / 1e6:.0f} MB",
            f"{ours.idle_pss / 1e6:.0f} MB idle before",
            f"{ours.peak_pss / ours.idle_pss:.2f}x",
            "the same trees, pages a prefork parent shares with its children counted once",
        ),
        Row(
            "concurrency",
            f"{case} stream CPU / chunk",
            f"{ours.stream_cpu_seconds * 1e6 / chunks:.0f} us",
            f"{raw.cpu_seconds * 1e6 / chunks:.0f} us raw httpx",
            f"{ours.stream_cpu_seconds / raw.cpu_seconds:.1f}x" if raw.cpu_seconds > 0 else "-",
            "provider bytes to an event in the session's stream: the stream loop's thread "
            f"(scheduler clock){stream_goal}",
        ),
        Row(
            "concurrency",
            f"{case} CPU s / 1k chunks",
            f"{ours.cpu_seconds * 1000 / chunks:.3f} s",
            f"{raw.cpu_seconds * 1000 / chunks:.3f} s raw httpx",
            f"{ours.cpu_seconds / raw.cpu_seconds:.1f}x" if raw.cpu_seconds > 0 else "-",
            f"whole workers (Celery's intake, the ledger's steps, the streams), utime+stime over "
            f"{chunks} chunks ({split}); reader "
            f"{ours.reader_cpu_seconds * 1000 / chunks:.3f} s",
        ),
        Row(
            "concurrency",
            f"{case} Redis commands/turn",
            f"{per_turn:.0f}",
            "-",
            "-",
            f"INFO commandstats delta / N, client and Celery included; {top}",
        ),
    ]
