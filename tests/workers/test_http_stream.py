"""The event-loop HTTP/1.1 client against a raw socket server that writes exact bytes.

Each case is a server answer as bytes, split into pieces sent with a pause between them, so
the client sees framing cut at every awkward place (inside a size line, between a chunk and
its CRLF, inside the head).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import weakref
from collections.abc import Awaitable, Callable

import pytest

from workers.http_stream import (
    HTTPStallError,
    HTTPStreamError,
    Response,
    environment_proxies,
    proxied,
    send,
)

Answer = list[bytes]
"""What the server writes, piece by piece, for each request it reads."""


async def serve(answers: list[Answer], then_close: bool = False) -> tuple[asyncio.Server, str]:
    """A server that answers the n-th request on a connection with ``answers[n]``."""
    remaining = list(answers)
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while remaining:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                requests.append(head + await reader.readexactly(length))
                for piece in remaining.pop(0):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.01)
            if then_close:
                writer.close()
            else:
                await reader.read()  # hold the connection until the client closes it
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.requests = requests  # type: ignore[attr-defined]
    return server, f"http://127.0.0.1:{port}/v1/chat?x=1"


def run(case: Callable[[], Awaitable[object]]) -> object:
    return asyncio.run(case())  # type: ignore[arg-type]


async def body_of(response: Response) -> bytes:
    return await response.read()


def pieces(data: bytes, size: int) -> Answer:
    return [data[i : i + size] for i in range(0, len(data), size)]


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"6\r\ndata: \r\n"
    b"a;ext=1\r\nhello\nworl\r\n"
    b"3\r\nd\n\n\r\n"
    b"0\r\nX-Trailer: yes\r\n\r\n"
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(CHUNKED)])
def test_chunked_body_split_anywhere(size: int) -> None:
    async def case() -> tuple[bytes, bytes, int]:
        server, url = await serve([pieces(CHUNKED, size), pieces(CHUNKED, size)])
        async with server:
            first = await send("POST", url, {"Authorization": "Bearer k"}, b"{}", timeout=5)
            second = await send("POST", url, {}, b"{}", timeout=5)  # the same connection
            return await body_of(first), await body_of(second), len(server.requests)  # type: ignore[attr-defined]

    first, second, requests = run(case)  # type: ignore[misc]
    assert first == second == b"data: hello\nworld\n\n"
    assert requests == 2


def test_request_head_carries_host_length_and_headers() -> None:
    async def case() -> bytes:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        server, url = await serve([[answer]])
        async with server:
            response = await send("POST", url, {"x-api-key": "k"}, b'{"a":1}', timeout=5)
            assert await body_of(response) == b"ok"
            return server.requests[0]  # type: ignore[attr-defined, no-any-return]

    request = run(case)
    head, _, body = request.partition(b"\r\n\r\n")  # type: ignore[attr-defined]
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat?x=1 HTTP/1.1"
    assert b"x-api-key: k" in lines and b"Content-Length: 7" in lines
    assert any(line.startswith(b"Host: 127.0.0.1:") for line in lines)
    assert body == b'{"a":1}'


def test_content_length_body_and_interim_answer() -> None:
    answer = b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 429 Too Many\r\n"
    answer += b'Retry-After: 7\r\nContent-Length: 11\r\n\r\n{"err": 1}\n'

    async def case() -> tuple[int, str | None, bytes]:
        server, url = await serve([pieces(answer, 5)])
        async with server:
            response = await send("POST", url, {}, b"", timeout=5)
            return response.status, response.header("retry-after"), await body_of(response)

    assert run(case) == (429, "7", b'{"err": 1}\n')


def test_body_until_close_and_gzip() -> None:
    packed = gzip.compress(b"data: zipped\n\n")
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + packed

    async def case() -> bytes:
        server, url = await serve([pieces(answer, 9)], then_close=True)
        async with server:
            return await body_of(await send("POST", url, {}, b"", timeout=5))

    assert run(case) == b"data: zipped\n\n"


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            HTTPStreamError,
            id="closed-mid-chunk",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            HTTPStreamError,
            id="bad-chunk-size",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            HTTPStreamError,
            id="short-body",
        ),
        pytest.param(b"SMTP ready\r\n\r\n", HTTPStreamError, id="not-http"),
    ],
)
def test_broken_answers_fail_the_response(answer: bytes, error: type[Exception]) -> None:
    async def case() -> None:
        server, url = await serve([[answer]], then_close=True)
        async with server:
            response = await send("POST", url, {}, b"", timeout=5)
            await body_of(response)

    with pytest.raises(error):
        run(case)


class BodyReader:
    """A consumer that, like the SSE reader, holds its response and is its sink's owner."""

    def __init__(self, response: Response) -> None:
        self.response = response
        self.body = b""

    def feed(self, data: bytes) -> None:
        self.body += data


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(CHUNKED, id="ended"),
        pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", id="broken"),
    ],
)
def test_a_finished_response_is_freed_by_reference_counting(answer: bytes) -> None:
    """Hundreds of streams end every second on one loop: a full pass of the cycle collector
    over what they leave behind stops all the others, so nothing of a finished one may be
    left in a reference cycle, whether its connection went back to the pool or broke."""

    async def case() -> tuple[bytes, bool]:
        server, url = await serve([pieces(answer, 16)], then_close=answer != CHUNKED)
        async with server:
            reader = BodyReader(await send("POST", url, {}, b"", timeout=5))
            with contextlib.suppress(HTTPStreamError):
                await reader.response.stream(reader.feed)
            body, left = reader.body, weakref.ref(reader)
            del reader
            return body, left() is not None

    gc.collect()
    gc.disable()  # only reference counting may free it
    try:
        body, left_behind = run(case)  # type: ignore[misc]
    finally:
        gc.enable()
    assert body.startswith(b"data: hel" if answer == CHUNKED else b"hel")
    assert not left_behind


def test_silence_past_the_timeout_is_a_stall() -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"

    async def case() -> bytes:
        server, url = await serve([[answer]])
        async with server:
            response = await send("POST", url, {}, b"", timeout=0.3)
            got: list[bytes] = []
            with pytest.raises(HTTPStallError):
                await response.stream(got.append)
            return b"".join(got)

    assert run(case) == b"abc"


def test_unreachable_server_and_header_injection_are_refused() -> None:
    async def unreachable() -> None:
        server, url = await serve([])
        server.close()
        await server.wait_closed()
        await send("POST", url, {}, b"", timeout=2)

    with pytest.raises(ConnectionError):
        run(unreachable)

    async def injected() -> None:
        await send("POST", "http://127.0.0.1:9/", {"x-key": "a\r\nEvil: 1"}, b"", timeout=2)

    with pytest.raises(ValueError, match="x-key"):
        run(injected)


@pytest.mark.parametrize(
    ("environment", "url", "expected"),
    [
        ({}, "https://api.openai.com/v1", False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.openai.com/v1", True),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://127.0.0.1:8000/v1", False),
        ({"ALL_PROXY": "http://proxy:3128"}, "http://127.0.0.1:8000/v1", True),
        (
            {"ALL_PROXY": "http://p:3128", "NO_PROXY": "127.0.0.1"},
            "http://127.0.0.1:8000/v1",
            False,
        ),
        (
            {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": ".openai.com"},
            "https://api.openai.com",
            False,
        ),
    ],
)
def test_proxied_follows_the_environment(
    environment: dict[str, str], url: str, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        for key in (name, name.lower()):
            monkeypatch.delenv(key, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    environment_proxies.cache_clear()
    try:
        assert proxied(url) is expected
    finally:
        environment_proxies.cache_clear()
