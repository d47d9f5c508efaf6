"""SSE framing and keep-alive, in-process: what every event stream of the gateway goes through."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from gateway.sse import PING, Keepalive, frame, json_frame, keep_alive

LINE_SEPARATORS = "line\u2028sep para\u2029graph next\x85line"


def data_lines(raw: bytes) -> list[str]:
    """The ``data:`` values of one frame, split the way the SSE grammar splits lines."""
    text = raw.decode()
    assert text.endswith("\n\n")
    lines = text[:-2].replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


def test_data_is_split_only_at_cr_lf_and_crlf() -> None:
    raw = frame(f"a{LINE_SEPARATORS}\r\nb\rc\nd", event="token", event_id="1-0")
    assert raw.decode().startswith("id: 1-0\nevent: token\n")
    assert data_lines(raw) == [f"a{LINE_SEPARATORS}", "b", "c", "d"]


def test_json_stays_on_one_line_and_round_trips() -> None:
    payload = {"text": LINE_SEPARATORS + "\n\r"}
    raw = json_frame(payload)
    (line,) = data_lines(raw)
    assert "\u2028" not in line and "\u2029" not in line and "\x85" not in line
    assert line.splitlines() == [line]
    assert json.loads(line) == payload


async def _collect(content: AsyncIterator[bytes], keepalive: Keepalive) -> list[bytes]:
    return [piece async for piece in keep_alive(content, keepalive, b"bye\n\n")]


def test_silence_is_filled_with_pings_and_shutdown_ends_the_stream() -> None:
    closed = []

    async def scenario() -> list[bytes]:
        closing, release = asyncio.Event(), asyncio.Event()

        async def content() -> AsyncIterator[bytes]:
            try:
                yield b"first\n\n"
                await release.wait()  # a compression running with nothing to send
                yield b"never\n\n"
            finally:
                closed.append(True)

        async def pinged_then_stop(stream: AsyncIterator[bytes]) -> list[bytes]:
            seen = []
            async for piece in stream:
                seen.append(piece)
                if seen.count(PING) == 2:
                    closing.set()
            return seen

        keepalive = Keepalive(ping_seconds=0.01, closing=closing)
        return await pinged_then_stop(keep_alive(content(), keepalive, b"bye\n\n"))

    seen = asyncio.run(scenario())
    assert seen[0] == b"first\n\n" and seen[1:3] == [PING, PING] and seen[-1] == b"bye\n\n"
    assert b"never\n\n" not in seen
    assert closed == [True], "the source stream was closed"


def test_a_stream_that_ends_ends_without_pings() -> None:
    async def content() -> AsyncIterator[bytes]:
        yield b"a\n\n"
        yield b"b\n\n"

    keepalive = Keepalive(ping_seconds=60, closing=asyncio.Event())
    assert asyncio.run(_collect(content(), keepalive)) == [b"a\n\n", b"b\n\n"]
