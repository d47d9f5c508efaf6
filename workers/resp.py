"""A Redis connection for the stream loop that writes a command the moment it is sent.

redis-py's asyncio client writes from inside a coroutine, so a flush started by a timer reaches
the socket only when the loop next runs that task: one more loop iteration, and at hundreds of
streams an iteration is several milliseconds of other streams' chunks. ``RespConnection.send``
packs with hiredis and writes at once, from the caller's own callback; replies come back in
order and resolve the futures ``send`` returned. Error replies resolve to redis-py's exceptions
(``NoScriptError`` included), so callers handle them as they would redis-py's.

It speaks plain ``redis://`` and ``unix://`` URLs (user, password, database); TLS, Sentinel
and Cluster stay with redis-py (see ``direct_url``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis
import redis.exceptions

from tokenwindow.settings import Settings

NOSCRIPT = "NOSCRIPT"


def direct_url(settings: Settings) -> str | None:
    """The URL a ``RespConnection`` can open for these settings, or None (TLS, Sentinel,
    Cluster: those keep redis-py's client)."""
    if settings.sentinels or settings.redis_cluster:
        return None
    url = settings.redis_url
    return url if url.startswith(("redis://", "unix://")) else None


class RespConnection(asyncio.Protocol):
    """One pipelined connection: ``send`` writes now, replies resolve in order."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader(replyError=redis.exceptions.ResponseError)
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._lost: Exception | None = None

    @classmethod
    async def open(cls, url: str, *, name: str, timeout: float = 5.0) -> RespConnection:
        """Connect, log in, select the URL's database and take ``name`` (``CLIENT LIST``)."""
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        connection = cls()
        try:
            if parts.scheme == "unix":
                connect = loop.create_unix_connection(lambda: connection, unquote(parts.path))
            else:
                host, port = parts.hostname or "localhost", parts.port or 6379
                connect = loop.create_connection(lambda: connection, host, port)
            await asyncio.wait_for(connect, timeout)
        except (TimeoutError, OSError) as exc:
            raise redis.exceptions.ConnectionError(f"cannot reach Redis: {exc}") from exc
        handshake = []
        if parts.password is not None:
            login = [unquote(parts.username)] if parts.username else []
            handshake.append(connection.send("AUTH", *login, unquote(parts.password)))
        database = _database(parts.path, parts.query)
        if database:
            handshake.append(connection.send("SELECT", database))
        handshake.append(connection.send("CLIENT", "SETNAME", name))
        try:
            await asyncio.wait_for(asyncio.gather(*handshake), timeout)
        except BaseException:
            connection.close()
            raise
        return connection

    @property
    def usable(self) -> bool:
        return self._transport is not None and self._lost is None

    def send(self, *args: str | int | bytes) -> asyncio.Future[Any]:
        """Write one command now; the future holds its reply (or the error it got)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self.usable:
            future.set_exception(self._lost or redis.exceptions.ConnectionError("not connected"))
            return future
        assert self._transport is not None
        # hiredis's stub types the argument as a one-element tuple; it takes any length.
        self._transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]
        self._waiting.append(future)
        return future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            future = self._waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, redis.exceptions.ResponseError):
                future.set_exception(_error(reply))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = redis.exceptions.ConnectionError(f"Redis connection lost: {exc or 'closed'}")
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(self._lost)


def _database(path: str, query: str) -> int:
    """``redis://host/3`` or ``unix:///sock?db=3``."""
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "db" and value:
            return int(value)
    number = path.strip("/")
    return int(number) if number.isdigit() else 0


def _error(reply: redis.exceptions.ResponseError) -> redis.exceptions.ResponseError:
    message = str(reply)
    if message.startswith(NOSCRIPT):
        return redis.exceptions.NoScriptError(message)
    return reply
