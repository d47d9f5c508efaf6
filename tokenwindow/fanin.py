"""Every live subscription of one client on one blocking read.

A subscriber that blocks in its own ``XREAD`` holds a Redis connection while it listens and
pays a round trip for each event it receives: a gateway relaying 200 replies held 200
connections and spent about a core reading, most reads returning one event. Here a client's
subscriptions share one ``XREAD BLOCK`` over all their streams. A worker writes every stream it
serves in one script per flush, so one read returns all of that flush. Each subscription keeps
its own cursor: order, exactly-once delivery and replay from an entry id are unchanged.

A subscription that starts while the read is blocked rings the client's doorbell (a one-entry
stream that every read also names), so the read starts over at once with the new stream in it.
A subscriber that stops taking events is fed at most ``BACKLOG`` of them; once it has taken
those, it catches up with reads of its own and then joins again. Redis Cluster keeps one read
per subscription, since one read may only name keys of one slot (``TokenManagementClient``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator

import redis.asyncio
import redis.exceptions

from tokenwindow.constants import doorbell_key

StreamEntry = tuple[str, dict[str, str]]
"""A stream entry as redis-py returns it: (entry id, fields)."""
Reply = list[tuple[str, list[StreamEntry]]]
"""An ``XREAD`` reply: (stream key, its entries) per stream that had any."""
Order = tuple[int, int]

BACKLOG = 5_000
"""Entries read for a subscription and not yet taken, at most; then it catches up alone."""
DOORBELL_TTL_SECONDS = 3_600
"""A client that vanished leaves its doorbell behind for this long."""
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
RECONNECT_DELAY_SECONDS = 0.5
"""Pause between reads while Redis is unreachable; every cursor resumes where it was."""


def _closed() -> redis.exceptions.ConnectionError:
    return redis.exceptions.ConnectionError("the client was closed")


def _order(entry_id: str) -> Order:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class _Follower:
    """One subscription: its cursor, and what was read for it but not yet taken."""

    def __init__(self, cursor: str) -> None:
        self.cursor = cursor
        self.after = _order(cursor)
        self.backlog: deque[StreamEntry] = deque()
        self.lagging = False
        """The backlog filled up: the shared read leaves this one out until it caught up."""
        self.expired = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def feed(self, entries: list[StreamEntry], since: Order) -> None:
        """Take ``entries``, read after ``since`` (at most this cursor), that are newer."""
        if since != self.after:
            entries = [e for e in entries if _order(e[0]) > self.after]
        room = BACKLOG - len(self.backlog)
        if len(entries) > room:
            entries, self.lagging = entries[:room], True
        if entries:
            self.backlog.extend(entries)
            self.cursor = entries[-1][0]
            self.after = _order(self.cursor)
            self._wake()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._wake()

    def expire(self) -> None:
        self.expired = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self) -> None:
        """Until fed, failed or expired."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class StreamFanIn:
    """Reads the streams of every subscription made through it, on the loop that made them."""

    def __init__(self, client: redis.asyncio.Redis, *, block_ms: int, count: int) -> None:
        self.loop = asyncio.get_running_loop()
        self._redis = client
        self._block_ms = block_ms
        self._count = count
        self._followers: dict[str, list[_Follower]] = {}
        self._doorbell = doorbell_key(uuid.uuid4().hex)
        self._doorbell_seen = "0-0"
        self._reading: dict[str, str] = {}
        """The blocked read's cursor per stream, while it is blocked."""
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def follow(
        self, key: str, cursor: str, deadline: float | None
    ) -> AsyncGenerator[StreamEntry, None]:
        """Entries of stream ``key`` after ``cursor``, in order, until ``deadline`` passes."""
        follower = _Follower(cursor)
        self._followers.setdefault(key, []).append(follower)
        expiry = None
        if deadline is not None:  # one timer per subscription, not one per wait
            expiry = self.loop.call_later(deadline - time.monotonic(), follower.expire)
        try:
            await self._serve(key, follower)
            while True:
                while follower.backlog:
                    yield follower.backlog.popleft()
                if follower.error is not None:
                    raise follower.error
                if follower.expired:
                    return
                if follower.lagging:
                    await self._catch_up(key, follower)
                else:
                    await follower.wait()
        finally:
            if expiry is not None:
                expiry.cancel()
            self._followers[key].remove(follower)
            if not self._followers[key]:
                del self._followers[key]

    async def close(self) -> None:
        """Stop reading; a subscription still open fails with ``ConnectionError``.

        The flag ends the read loop even if the cancellation is lost on its way through
        redis-py: the loop would take what arrives instead for an outage and read again, and
        ``asyncio.run`` would wait for it forever.
        """
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._fail_all(_closed())

    async def _serve(self, key: str, follower: _Follower) -> None:
        """Have the shared read include ``follower``'s stream from its cursor, now."""
        if self._closed:
            raise _closed()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._read())
            return
        if not self._reading:
            return  # not blocked: the next read names every stream
        reading = self._reading.get(key)
        if reading is None or _order(reading) > follower.after:
            await self._ring()

    async def _ring(self) -> None:
        """End the blocked read (it names the doorbell), so the next one names every stream."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.xadd(self._doorbell, {"ring": 1}, maxlen=1, approximate=False)
        pipe.expire(self._doorbell, DOORBELL_TTL_SECONDS)
        with contextlib.suppress(*UNREACHABLE):  # the read is failing too; it rereads all
            await pipe.execute()

    async def _catch_up(self, key: str, follower: _Follower) -> None:
        """A read of the follower's own; once it is level with its stream it joins again."""
        try:
            reply: Reply = await self._redis.xread(  # type: ignore[assignment]
                {key: follower.cursor}, count=self._count
            )
        except UNREACHABLE:
            await asyncio.sleep(RECONNECT_DELAY_SECONDS)
            return
        read = 0
        for _, entries in reply:
            follower.feed(entries, follower.after)
            read = len(entries)
        if read < self._count:
            follower.lagging = False
            await self._serve(key, follower)

    async def _read(self) -> None:
        try:
            while self._followers and not self._closed:
                streams = {
                    key: min(cursors, key=_order)
                    for key, followers in self._followers.items()
                    if (cursors := [f.cursor for f in followers if not f.lagging])
                }
                streams[self._doorbell] = self._doorbell_seen
                self._reading = streams
                try:
                    reply: Reply = await self._redis.xread(  # type: ignore[assignment]
                        streams,  # type: ignore[arg-type]
                        block=self._block_ms,
                        count=self._count,
                    )
                except UNREACHABLE:
                    await asyncio.sleep(RECONNECT_DELAY_SECONDS)
                    continue
                finally:
                    self._reading = {}
                for key, entries in reply:
                    if key == self._doorbell:
                        self._doorbell_seen = entries[-1][0]
                        continue
                    since = _order(streams[key])
                    for follower in self._followers.get(key, ()):
                        # A follower behind the read's cursor would miss what lies between.
                        if not follower.lagging and follower.after >= since:
                            follower.feed(entries, since)
        except Exception as exc:  # Redis refused the read: every subscription hears why
            self._fail_all(exc)

    def _fail_all(self, error: BaseException) -> None:
        for followers in self._followers.values():
            for follower in followers:
                follower.fail(error)
