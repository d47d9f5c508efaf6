"""HTTP/1.1 responses read in the event loop's own callbacks: one callback per provider chunk.

A streamed reply is hundreds of small chunks, usually one TCP segment each. httpx reads each
through five layers of coroutines (httpx, httpcore, h11, anyio, asyncio streams): on this
machine about a hundred microseconds of CPU per chunk, more than everything else a turn does
with it. Here the connection is an ``asyncio.Protocol``: ``data_received`` undoes the chunked
framing and hands the bytes to the response's consumer in the same call, with no task switch.

The requests themselves are litellm's (``workers.provider_request``), sent as built. Connections
are kept alive per origin and event loop. TLS uses httpx's context (``SSL_CERT_FILE`` and
certifi, as httpx would). A URL that the environment sends through a proxy is not for this
module (``proxied``): such calls stream through litellm instead.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import urllib.request
import weakref
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "HTTPStallError",
    "HTTPStreamError",
    "Response",
    "close_pools",
    "environment_proxies",
    "proxied",
    "send",
]

MAX_HEAD_BYTES = 64 * 1024
"""A status line and headers longer than this are not an HTTP server's answer."""
MAX_IDLE_PER_ORIGIN = 512
"""Kept-alive connections per origin; more than the streams one loop runs at once is waste."""
KEEPALIVE_SECONDS = 30.0
"""An idle connection older than this is closed, not reused (servers drop idle ones)."""
USER_AGENT = "tokenwindow"

BodySink = Callable[[bytes], None]


class HTTPStreamError(ConnectionError):
    """Raised when a connection closes early or the server breaks HTTP/1.1 framing."""


class HTTPStallError(TimeoutError):
    """Raised when nothing arrives within the read timeout (connecting included)."""


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int


@functools.cache
def environment_proxies() -> dict[str, str]:
    """The proxy settings of the environment, read once per process: ``getproxies`` walks
    every environment variable, which per streamed reply cost more than its HTTP framing."""
    return urllib.request.getproxies_environment()


def proxied(url: str) -> bool:
    """True when the environment (``HTTPS_PROXY``, ``NO_PROXY``...) routes ``url`` via a proxy."""
    parts = urlsplit(url)
    proxies = environment_proxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")  # NO_PROXY, read when needed


class Response:
    """A response whose head has arrived; its body goes to one consumer as it comes."""

    def __init__(self, exchange: _Exchange, status: int, headers: list[tuple[str, str]]):
        self.status = status
        self.headers = headers
        """(lower-cased name, value) pairs in the order received."""
        self._exchange = exchange

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def stream(self, sink: BodySink) -> asyncio.Future[None]:
        """Hand every body byte to ``sink`` (what arrived already, at once); the future ends
        with the body, or with the error that stopped it (``sink``'s own included)."""
        return self._exchange.attach(sink)

    async def read(self) -> bytes:
        """The whole body (for refusals: small JSON documents)."""
        parts: list[bytes] = []
        await self.stream(parts.append)
        return b"".join(parts)

    def close(self) -> None:
        """Stop reading: an unfinished body closes the connection. Safe to call at any time."""
        if not self._exchange.done.done():
            self._exchange.connection.abort(HTTPStreamError("response closed by the reader"))


class _Exchange:
    """One request's answer: its head, its body's end, and where body bytes go.

    An exchange lets go of what refers back to it as soon as it is answered (the head's future
    holds the response) and ended (the sink is the reader's method), and its connection lets go
    of it: a finished stream's objects are freed at once, not left in reference cycles for the
    collector's full passes, which stop every stream of the loop while they run.
    """

    def __init__(self, connection: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        self.connection = connection
        self.head: asyncio.Future[Response] | None = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.sink: BodySink | None = None
        self._early: list[bytes] = []

    def attach(self, sink: BodySink) -> asyncio.Future[None]:
        if self.sink is None:
            early, self._early = self._early, []
            for data in early:
                sink(data)
            if not self.done.done():
                self.sink = sink
        return self.done

    def answer(self, response: Response) -> None:
        head, self.head = self.head, None
        assert head is not None
        head.set_result(response)

    def emit(self, data: bytes) -> None:
        if self.sink is None:
            self._early.append(data)
        else:
            self.sink(data)

    def fail(self, exc: BaseException) -> None:
        if self.head is not None:
            self.head.set_exception(exc)
            self.head = None
        if not self.done.done():
            self.done.set_exception(exc)
            if self.sink is None:  # nobody may ever await it: no "never retrieved" warning
                self.done.exception()
        self.sink = None

    def end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        self.sink = None


# Connection states.
_IDLE, _HEAD, _BODY = 0, 1, 2
# Body framings.
_CHUNKED, _LENGTH, _UNTIL_CLOSE = 0, 1, 2
# Where a chunked body is: a size line, chunk data, the CRLF after it, the trailers.
_SIZE, _DATA, _DATA_END, _TRAILERS = 0, 1, 2, 3


class _Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection, serving one request at a time."""

    def __init__(self, pool: _Pool, origin: _Origin) -> None:
        self._pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._state = _IDLE
        self._buffer = bytearray()
        self._exchange: _Exchange | None = None
        self._framing = _UNTIL_CLOSE
        self._chunk_state = _SIZE
        self._left = 0
        self._reusable = False
        self._decoder: Any = None
        self._timeout = 0.0
        self._last_read = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._state == _BODY and self._framing == _UNTIL_CLOSE:
            self._reusable = False
            self._end_body()
        elif self._state != _IDLE:
            self._fail(HTTPStreamError("the connection closed before the response ended"))
        self._pool.forget(self)

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        try:
            if self._state == _BODY:
                self._body(data)
            elif self._state == _HEAD:
                self._buffer += data
                self._read_head()
            else:  # bytes nobody asked for: the connection cannot be trusted again
                self.abort(HTTPStreamError("unexpected bytes on an idle connection"))
        except Exception as exc:  # the consumer's own error ends its response, nothing else
            self.abort(exc)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost decides what the end means

    # --- one exchange ------------------------------------------------------------------------
    def request(self, head: bytes, body: bytes, timeout: float) -> asyncio.Future[Response]:
        assert self.transport is not None and self._state == _IDLE
        self._state, self._timeout = _HEAD, timeout
        self._exchange = exchange = _Exchange(self, self._loop)
        assert exchange.head is not None
        self._buffer = bytearray()
        self._last_read = self._loop.time()
        self._watchdog = self._loop.call_later(timeout, self._check_stall)
        self.transport.write(head + body)
        return exchange.head

    def abort(self, exc: BaseException) -> None:
        """Fail the exchange in progress with ``exc`` and close the connection."""
        self._reusable = False
        self._fail(exc)
        if self.transport is not None:
            self.transport.close()

    def _check_stall(self) -> None:
        quiet = self._loop.time() - self._last_read
        if quiet >= self._timeout:
            self.abort(HTTPStallError(f"nothing received for {self._timeout:g} s"))
        else:
            self._watchdog = self._loop.call_later(self._timeout - quiet, self._check_stall)

    def _fail(self, exc: BaseException) -> None:
        if self._state == _IDLE:
            return
        self._state = _IDLE
        self._stop_watchdog()
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.fail(exc)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    # --- the head ----------------------------------------------------------------------------
    def _read_head(self) -> None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise HTTPStreamError("the response head is too long")
            return
        lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        rest = bytes(self._buffer[end + 4 :])
        self._buffer = bytearray()
        version, _, status_text = lines[0].partition(" ")
        code = status_text[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise HTTPStreamError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        status = int(code)
        if 100 <= status < 200:  # an interim answer (103 Early Hints): the real one follows
            self._buffer += rest
            self._read_head()
            return
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise HTTPStreamError(f"malformed header line: {line[:80]!r}")
            headers.append((name.strip().lower(), value.strip()))
        assert self._exchange is not None
        response = Response(self._exchange, status, headers)
        self._frame(response, version)
        self._state = _BODY
        self._exchange.answer(response)
        if self._framing == _LENGTH and self._left == 0:
            self._end_body()
        elif rest:
            self._body(rest)

    def _frame(self, response: Response, version: str) -> None:
        """How the body ends, whether the connection can serve again, how it is encoded."""
        connection = (response.header("connection") or "").lower()
        self._reusable = version == "HTTP/1.1" and "close" not in connection
        coding = (response.header("transfer-encoding") or "").lower()
        length = response.header("content-length")
        if "chunked" in coding:
            self._framing, self._chunk_state = _CHUNKED, _SIZE
        elif length is not None and length.isdigit():
            self._framing, self._left = _LENGTH, int(length)
        else:
            self._framing, self._reusable = _UNTIL_CLOSE, False
        encoding = (response.header("content-encoding") or "identity").lower()
        if encoding in ("gzip", "deflate"):
            self._decoder = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
        elif encoding != "identity":
            raise HTTPStreamError(f"unsupported content-encoding {encoding!r}")
        else:
            self._decoder = None

    # --- the body ----------------------------------------------------------------------------
    def _emit(self, data: bytes) -> None:
        if self._decoder is not None:
            data = self._decoder.decompress(data)
            if not data:
                return
        assert self._exchange is not None
        self._exchange.emit(data)

    def _body(self, data: bytes) -> None:
        if self._framing == _CHUNKED:
            self._chunked(data)
        elif self._framing == _LENGTH:
            take = data[: self._left]
            self._left -= len(take)
            if take:
                self._emit(take)
            if self._left == 0:
                if len(data) > len(take):
                    self._reusable = False  # more than the server announced
                self._end_body()
        elif data:
            self._emit(data)

    def _chunked(self, data: bytes) -> None:
        """Chunked transfer coding (RFC 9112 7.1), split anywhere across calls."""
        if self._buffer:
            self._buffer += data
            data = bytes(self._buffer)
            self._buffer = bytearray()
        pos, size = 0, len(data)
        while pos < size and self._state == _BODY:
            state = self._chunk_state
            if state == _DATA:
                end = min(pos + self._left, size)
                self._emit(data[pos:end])
                self._left -= end - pos
                pos = end
                if self._left == 0:
                    self._chunk_state = _DATA_END
                continue
            if state == _DATA_END and size - pos < 2:
                break
            if state == _DATA_END:
                if data[pos : pos + 2] != b"\r\n":
                    raise HTTPStreamError("a chunk did not end with CRLF")
                pos += 2
                self._chunk_state = _SIZE
                continue
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                if size - pos > MAX_HEAD_BYTES:
                    raise HTTPStreamError("a chunk size line is too long")
                break
            line = data[pos:line_end]
            pos = line_end + 2
            if state == _TRAILERS:
                if not line:
                    self._end_body()
                continue
            digits = line.split(b";", 1)[0].strip()
            try:
                self._left = int(digits, 16)
            except ValueError:
                raise HTTPStreamError(f"bad chunk size {digits[:20]!r}") from None
            self._chunk_state = _DATA if self._left else _TRAILERS
        if pos < size:
            if self._state == _BODY:
                self._buffer += data[pos:]
            else:
                self._reusable = False  # bytes after the last chunk

    def _end_body(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            self._decoder = None
            if tail:
                self._emit(tail)
        self._state = _IDLE
        self._stop_watchdog()
        exchange, self._exchange = self._exchange, None
        if self._reusable and self.transport is not None and not self.transport.is_closing():
            self._pool.release(self)
        elif self.transport is not None:
            self.transport.close()
        if exchange is not None:
            exchange.end()


class _Pool:
    """The idle connections of one event loop, per origin."""

    def __init__(self) -> None:
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    def release(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.origin, [])
        if len(idle) >= MAX_IDLE_PER_ORIGIN:
            assert connection.transport is not None
            connection.transport.close()
            return
        connection.idle_since = asyncio.get_running_loop().time()
        idle.append(connection)

    def forget(self, connection: _Connection) -> None:
        idle = self._idle.get(connection.origin)
        if idle and connection in idle:
            idle.remove(connection)

    async def acquire(self, origin: _Origin, timeout: float) -> _Connection:
        now = asyncio.get_running_loop().time()
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            transport = connection.transport
            if transport is None or transport.is_closing():
                continue
            if now - connection.idle_since < KEEPALIVE_SECONDS:
                return connection
            transport.close()
        return await self._connect(origin, timeout)

    async def _connect(self, origin: _Origin, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls() if origin.scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, origin),
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls else None,
                )
        except TimeoutError:
            raise HTTPStallError(f"could not connect within {timeout:g} s") from None
        return connection

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            import httpx  # its context honours SSL_CERT_FILE / SSL_CERT_DIR, else certifi

            self._ssl = httpx.create_ssl_context()
        return self._ssl

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                if connection.transport is not None:
                    connection.transport.close()
        self._idle.clear()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pool] = weakref.WeakKeyDictionary()


def _pool() -> _Pool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = _Pool()
    return pool


def close_pools() -> None:
    """Close the running loop's kept-alive connections (at worker shutdown)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        pool.close()


def _head(method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[_Origin, bytes]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    origin = _Origin(parts.scheme, parts.hostname, port)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = port == (443 if parts.scheme == "https" else 80)
    host = parts.hostname if default_port else f"{parts.hostname}:{port}"
    if ":" in parts.hostname:  # an IPv6 literal
        host = f"[{parts.hostname}]" + ("" if default_port else f":{port}")
    given = {name.lower() for name in headers}
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
            continue
        if any(c in name or c in value for c in "\r\n"):
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    if "accept" not in given:
        lines.append("Accept: */*")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: gzip, deflate")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}")
    lines.append(f"Content-Length: {len(body)}")
    return origin, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send(
    method: str, url: str, headers: dict[str, str], body: bytes, *, timeout: float
) -> Response:
    """Send a request on a kept-alive connection and return once the response head is here.

    ``timeout`` bounds connecting and every wait for bytes after it. Raises ``HTTPStallError``
    past it, ``OSError`` (``HTTPStreamError`` among them) when the connection fails.
    """
    origin, head = _head(method, url, headers, body)
    connection = await _pool().acquire(origin, timeout)
    future = connection.request(head, body, timeout)
    try:
        return await future
    except asyncio.CancelledError:
        connection.abort(HTTPStreamError("request cancelled"))
        raise
