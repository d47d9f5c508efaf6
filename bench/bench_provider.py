"""Gateway overhead: a call through ``workers.llm`` (litellm) or ``workers.provider_stream``
(the event-loop path) against the same raw HTTP request.

All talk to one fake OpenAI server in its own process (so it does not share our GIL), in the
same run, median of many calls. The ratio is what litellm plus our error mapping cost per call.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import httpx

from bench.bench_chunk_cost import text_of
from bench.report import Row
from tests.fakes import FakeProviderProcess, openai_spec
from tests.fakes.specs import FAKE_KEY
from tokenwindow.messages import Message

MESSAGES: list[Message] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Tell me about the harbour, the lighthouse and the old market."},
]


def median_ms(calls: int, fn: Callable[[], object]) -> float:
    fn()  # warm-up: connection pools, lazy imports
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def run(args: argparse.Namespace) -> list[Row]:
    from tokenwindow.settings import load_settings
    from workers import llm
    from workers.provider_stream import open_stream

    settings = load_settings()

    calls = 20 if args.quick else 100
    rows = []
    with FakeProviderProcess.spawn() as server, httpx.Client(timeout=30) as http:
        spec = openai_spec(server.openai_base)
        url = f"{server.openai_base}/chat/completions"
        headers = {"Authorization": f"Bearer {FAKE_KEY}"}
        body = {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 200}

        stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}

        def raw_stream() -> str:
            with http.stream("POST", url, json=stream_body, headers=headers) as response:
                return "".join(response.iter_lines())

        loop = asyncio.new_event_loop()
        async_http = httpx.AsyncClient(timeout=30)

        async def event_loop_stream() -> str:
            stream = await open_stream(spec, MESSAGES, {"max_tokens": 200}, settings=settings)
            return await text_of(stream)

        async def raw_async_stream() -> str:
            async with async_http.stream(
                "POST", url, json=stream_body, headers=headers
            ) as response:
                return "".join([line async for line in response.aiter_lines()])

        cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
            (
                "streamed reply",
                lambda: "".join(llm.stream_completion(spec, MESSAGES, max_tokens=200)),
                raw_stream,
            ),
            (
                "streamed reply, event loop (open_stream)",
                lambda: loop.run_until_complete(event_loop_stream()),
                lambda: loop.run_until_complete(raw_async_stream()),
            ),
            (
                "non-streamed reply",
                lambda: llm.generate(spec, MESSAGES, max_tokens=200),
                lambda: http.post(url, json=body, headers=headers).json(),
            ),
        ]
        for case, ours, baseline in cases:
            ours_ms = median_ms(calls, ours)
            base_ms = median_ms(calls, baseline)
            rows.append(
                Row(
                    "provider",
                    case,
                    f"{ours_ms:.2f} ms",
                    f"{base_ms:.2f} ms raw httpx",
                    f"{ours_ms / base_ms:.1f}x",
                    f"median of {calls}, fake OpenAI server in a child process",
                )
            )
        loop.run_until_complete(async_http.aclose())
        loop.close()
    return rows
