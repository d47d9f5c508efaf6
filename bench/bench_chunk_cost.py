"""CPU per streamed chunk: our provider streams beside raw httpx and litellm, per wire format.

Every case reads the same streams (N replies of 50 text chunks each) from one fake provider in
a child process, so only the client's CPU is counted (``time.process_time`` around the whole
batch, divided by the chunks the server sent). Raw httpx is the floor: one ``aiter_lines``
loop and ``json.loads`` per event. litellm's rows are what a worker paid before this layer.
Async cases run all N streams at once on one event loop, as a worker does.

The last case is the whole path a worker runs per chunk, provider bytes to an event in the
session's stream: a worker's own engine (``workers.engine``, in a process of its own, as in a
worker) streams each reply with ``stream_reply`` into its session's events on a private
redis-server, publisher and flush interval as shipped; every reply is then read back from its
session's stream. That case is paced as real streams are (20 ms a chunk): from an instant
server the publisher would join many chunks into each event and hide the per-event work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import httpx
import redis

from bench.report import Row
from tests.fakes import (
    FakeProviderProcess,
    RemoteFakeProvider,
    anthropic_spec,
    gemini_spec,
    openai_spec,
)
from tests.redis_server import RedisServer
from tokenwindow.constants import events_stream_key
from tokenwindow.events import EventType, decode_event
from tokenwindow.messages import Message
from tokenwindow.models import ModelSpec
from tokenwindow.settings import Settings, load_settings

if TYPE_CHECKING:
    from workers.provider_stream import ProviderStream

CHUNKS = 50
REPLY = "".join(f"w{n} " for n in range(CHUNKS))
"""The fake streams one word per chunk: exactly CHUNKS text chunks per reply."""
MESSAGES: list[Message] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Tell me about the harbour, the lighthouse and the old market."},
]
WIRES = ("openai", "anthropic", "gemini")


def _spec(wire: str, server: RemoteFakeProvider) -> ModelSpec:
    if wire == "openai":
        return openai_spec(server.openai_base)
    if wire == "anthropic":
        return anthropic_spec(server.anthropic_base)
    return gemini_spec(server.gemini_base)


# --- the readers compared -------------------------------------------------------------------
def _raw_request(spec: ModelSpec) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The plainest request each API accepts, written by hand."""
    key = spec.api_key or ""
    model = spec.litellm_model.split("/", 1)[1]
    messages = [dict(m) for m in MESSAGES]
    if spec.provider == "openai":
        body = {"model": model, "messages": messages, "stream": True, "max_tokens": 500}
        return f"{spec.api_base}/chat/completions", {"Authorization": f"Bearer {key}"}, body
    if spec.provider == "anthropic":
        body = {"model": model, "messages": messages[1:], "stream": True, "max_tokens": 500}
        return f"{spec.api_base}/v1/messages", {"x-api-key": key}, body
    contents = [{"role": "user", "parts": [{"text": str(messages[1]["content"])}]}]
    url = f"{spec.api_base}/models/{model}:streamGenerateContent?alt=sse"
    return url, {"x-goog-api-key": key}, {"contents": contents}


def _text_of(wire: str, event: dict[str, Any]) -> str:
    if wire == "openai":
        choices = event.get("choices") or [{}]
        return str((choices[0].get("delta") or {}).get("content") or "")
    if wire == "anthropic":
        return str((event.get("delta") or {}).get("text") or "")
    parts = ((event.get("candidates") or [{}])[0].get("content") or {}).get("parts") or []
    return "".join(str(p.get("text", "")) for p in parts)


async def raw_httpx(wire: str, spec: ModelSpec, streams: int, _: Settings) -> list[str]:
    url, headers, body = _raw_request(spec)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as http:

        async def one() -> str:
            text = []
            async with http.stream("POST", url, headers=headers, json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data:") and line != "data: [DONE]":
                        text.append(_text_of(wire, json.loads(line[5:])))
            return "".join(text)

        return await asyncio.gather(*(one() for _ in range(streams)))


def _litellm_request(spec: ModelSpec) -> dict[str, Any]:
    return {
        "model": spec.litellm_model,
        "messages": MESSAGES,
        "api_base": spec.api_base,
        "api_key": spec.api_key,
        "stream": True,
        "stream_options": {"include_usage": True},
        "num_retries": 0,
        "max_retries": 0,
    }


async def litellm_sync(_: str, spec: ModelSpec, streams: int, __: Settings) -> list[str]:
    """``litellm.completion(stream=True)``, one stream after another (it blocks)."""
    from workers.llm import load_litellm

    litellm = load_litellm()
    replies = []
    for _ in range(streams):
        chunks = litellm.completion(**_litellm_request(spec))
        replies.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
    return replies


async def litellm_async(_: str, spec: ModelSpec, streams: int, __: Settings) -> list[str]:
    from workers.llm import load_litellm

    litellm = load_litellm()

    async def one() -> str:
        chunks = await litellm.acompletion(**_litellm_request(spec))
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

    return await asyncio.gather(*(one() for _ in range(streams)))


async def text_of(stream: ProviderStream) -> str:
    """The reply's text, pumped from ``stream`` as a worker pumps it."""
    parts: list[str] = []
    async with stream:
        await stream.pump(lambda delta: parts.append(delta.text))
    return "".join(parts)


async def ours(_: str, spec: ModelSpec, streams: int, settings: Settings) -> list[str]:
    from workers.provider_stream import open_stream

    async def one() -> str:
        return await text_of(await open_stream(spec, MESSAGES, {}, settings=settings))

    return await asyncio.gather(*(one() for _ in range(streams)))


def _stream_into_sessions(
    wire: str, provider_url: str, redis_url: str, streams: int, send: Connection
) -> None:
    """In a process of its own: one warm-up reply, then N replies at once through a worker's
    engine into N sessions; sends back the CPU the N took."""
    os.environ["REDIS_URL"] = redis_url  # before the engine reads the settings
    from workers.engine import get_engine
    from workers.streaming import Attempt, stream_reply

    engine = get_engine()
    settings = load_settings(provider_timeout_seconds=60)
    spec = _spec(wire, RemoteFakeProvider(provider_url))

    async def one(session_id: str) -> None:
        attempt = Attempt(session_id, "t-1", "bench", 1, "", False)
        await stream_reply(engine, attempt, spec, MESSAGES, {}, settings=settings)

    async def batch(prefix: str, n: int) -> None:
        await asyncio.gather(*(one(f"{prefix}-{i}") for i in range(n)))

    engine.run(batch(f"cc-{wire}-warm", 1))
    start = time.process_time()
    engine.run(batch(f"cc-{wire}", streams))
    send.send(time.process_time() - start)


def _published_text(client: redis.Redis, session_id: str) -> str:
    """The text of every ``token`` event in the session's stream, in order."""
    entries = client.xrange(events_stream_key(session_id))
    events = [decode_event(fields["event"], entry_id) for entry_id, fields in entries]
    return "".join(str(e.get("text", "")) for e in events if e["type"] == EventType.TOKEN)


def into_session_streams_us_per_chunk(
    wire: str, server: FakeProviderProcess, streams: int
) -> float:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    server.configure(token_delay=PACED_CHUNK_SECONDS)
    server.queue_replies(*[REPLY] * (streams + 1))
    try:
        with RedisServer() as redis_server:
            child = context.Process(
                target=_stream_into_sessions,
                args=(wire, server.url, redis_server.url(), streams, send),
            )
            child.start()
            child.join(timeout=300)
            if child.is_alive():
                child.kill()  # hung: not left running beside the next cases
                child.join()
            if child.exitcode != 0 or not receive.poll():
                raise RuntimeError(f"{wire}: the streaming process failed ({child.exitcode})")
            spent = float(receive.recv())
            with redis.Redis.from_url(redis_server.url(), decode_responses=True) as client:
                texts = [_published_text(client, f"cc-{wire}-{i}") for i in range(streams)]
    finally:
        server.configure(token_delay=0)  # the other cases read as fast as the server writes
    if texts != [REPLY] * streams:
        raise RuntimeError(f"{wire}: a session's stream holds a reply different from what was sent")
    return spent / (streams * CHUNKS) * 1e6


Reader = Callable[[str, ModelSpec, int, Settings], Awaitable[list[str]]]
INTO_SESSIONS = "ours, into the session's stream"
SESSION_PATH_GOAL_US = 150
"""CPU per chunk, provider bytes to an event in the session's stream."""
PACED_CHUNK_SECONDS = 0.020
CASES: list[tuple[str, Reader]] = [
    ("raw httpx", raw_httpx),
    ("litellm.completion", litellm_sync),
    ("litellm.acompletion", litellm_async),
    ("ours (open_stream)", ours),
]


def cpu_us_per_chunk(
    reader: Reader, wire: str, server: FakeProviderProcess, streams: int, settings: Settings
) -> float:
    spec = _spec(wire, server)
    server.queue_replies(*[REPLY] * (streams + 1))
    asyncio.run(reader(wire, spec, 1, settings))  # warm-up: imports, first connection
    start = time.process_time()
    replies = asyncio.run(reader(wire, spec, streams, settings))
    spent = time.process_time() - start
    if replies != [REPLY] * streams:
        raise RuntimeError(f"{wire}: a reply came back different from what was sent")
    return spent / (streams * CHUNKS) * 1e6


# --- our layer alone: recorded bytes replayed, no network -------------------------------------
class _Replay:
    """A response whose body is recorded SSE frames, handed over one frame per read."""

    def __init__(self, frames: list[bytes]) -> None:
        self._frames = frames

    async def stream(self, sink: Callable[[bytes], None]) -> None:
        for frame in self._frames:
            sink(frame)

    def close(self) -> None:
        """Nothing to release."""


def _recorded_frames(wire: str) -> list[bytes]:
    from tests.fakes import anthropic_wire, gemini_wire, openai_wire
    from tests.fakes.behaviour import split_words
    from tests.fakes.wire import Outcome, ParsedRequest, Usage

    module = {"openai": openai_wire, "anthropic": anthropic_wire, "gemini": gemini_wire}[wire]
    request = ParsedRequest("m", [], stream=True, max_tokens=None, include_usage=True)
    outcome = Outcome(split_words(REPLY), "stop", Usage(30, CHUNKS))
    return [frame.data for frame in module.stream("r", request, outcome)]


def parse_cost(wire: str, streams: int, settings: Settings) -> tuple[float, float]:
    """(our SSE and chunk readers, a bare ``json.loads`` per event) in CPU us per chunk."""
    from workers.provider_chunks import READERS
    from workers.provider_request import build_request
    from workers.provider_stream import _SSEStream

    spec = _spec(wire, RemoteFakeProvider("http://replay.invalid"))
    config = asyncio.run(build_request(wire, spec, MESSAGES, {}, settings)).config
    frames = _recorded_frames(wire)

    async def ours() -> None:
        for _ in range(streams):
            reader = READERS[wire](config, {})
            response: Any = _Replay(frames)  # stands in for workers.http_stream.Response
            text = await text_of(_SSEStream(spec, MESSAGES, response, reader))
            assert text == REPLY, text

    def floor() -> None:
        for _ in range(streams):
            for frame in frames:
                for line in frame.split(b"\n"):
                    if line.startswith(b"data:") and line != b"data: [DONE]":
                        json.loads(line[5:])

    start = time.process_time()
    asyncio.run(ours())
    mine = time.process_time() - start
    start = time.process_time()
    floor()
    bare = time.process_time() - start
    return mine / (streams * CHUNKS) * 1e6, bare / (streams * CHUNKS) * 1e6


def run(args: argparse.Namespace) -> list[Row]:
    streams = 50 if args.quick else 200
    settings = load_settings(provider_timeout_seconds=60)
    rows = []
    with FakeProviderProcess.spawn() as server:
        for wire in WIRES:
            costs = {
                name: cpu_us_per_chunk(reader, wire, server, streams, settings)
                for name, reader in CASES
            }
            costs[INTO_SESSIONS] = into_session_streams_us_per_chunk(wire, server, streams)
            base = costs["raw httpx"]
            for name, cost in costs.items():
                note = f"CPU, {streams} streams x {CHUNKS} chunks, fake server in a child"
                if name == INTO_SESSIONS:
                    note += (
                        f", {PACED_CHUNK_SECONDS * 1000:.0f} ms a chunk; a worker's engine "
                        f"and Redis; goal <= {SESSION_PATH_GOAL_US} us"
                    )
                rows.append(
                    Row(
                        "chunk_cost",
                        f"{wire}: {name}",
                        f"{cost:.0f} us/chunk",
                        f"{base:.0f} us raw httpx",
                        f"{cost / base:.1f}x",
                        note,
                    )
                )
    for wire in WIRES:
        mine, bare = parse_cost(wire, streams * 5, settings)
        rows.append(
            Row(
                "chunk_cost",
                f"{wire}: ours, parsing only",
                f"{mine:.1f} us/chunk",
                f"{bare:.1f} us json.loads alone",
                f"{mine / bare:.1f}x",
                "recorded SSE bytes replayed in process: the layer without httpx",
            )
        )
    return rows
