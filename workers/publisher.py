"""Streamed events at real load: Redis work follows time, not chunk count.

Every reply being streamed in this process has an outbox. Its first delta goes out at once;
later deltas that arrive within one flush interval (``TOKENWINDOW_STREAM_FLUSH_MS``) are
coalesced into one ``token`` event. The intervals count from when the last flush was due, not
from when a delta was put: a delta goes out one interval after that (at once if that is past).
So a hold-up of the loop just after a flush (a collection pass, a wait for the interpreter
lock) is not added to the wait of the deltas it held up, and a delta that finds no flush due in
the last interval goes at once. One call of the publish script
(``tokenwindow.eventlog.PUBLISH_LUA``) carries every outbox's events of that interval: a
hundred streams cost one round trip, not a hundred commands to pack and parse. With an interval
of 0 each delta is its own event, still sent with whatever else is ready in the same loop
iteration. An outbox has one flush in flight at a time, which keeps its events in order; a
delta that arrived meanwhile goes out when that flush lands if its own interval is over by
then, not one interval later.

On a plain Redis the call is written by the flush timer's own callback, over a connection of
the publisher's (``workers.resp``): at hundreds of streams, waiting for a task to write it cost
each event one more loop iteration of delay. Over Sentinel or TLS the call goes through
redis-py's client; on Redis Cluster, where sessions live in different slots, each outbox is its
own call, pipelined.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable
from typing import Any

import redis.asyncio
import redis.exceptions

from tokenwindow.eventlog import (
    KIND_RESET,
    KIND_TOKEN,
    KIND_TOOL,
    PUBLISH_LUA,
    TokenEncoder,
    Triple,
    encode_event,
    publish_call,
)
from tokenwindow.events import EventType
from tokenwindow.scripts import AsyncScript
from workers.reply import Action
from workers.resp import RespConnection

Call = tuple[list[str], list[str | int]]
"""KEYS and ARGV of one publish-script call (``publish_call``)."""
CLIENT_NAME = "tokenwindow-publish"
"""The publisher's own connection, as ``CLIENT LIST`` shows it."""
KEEP_EXPIRY = 0
"""Streams set no expiry per flush: the turn's begin set it on every key of the session, and
its lease renewals (every third of a lease) set it again."""


class Outbox:
    """One reply's events not yet in Redis, in order; adjacent text is joined."""

    def __init__(self, publisher: StreamPublisher, session_id: str, turn_id: str, attempt: int):
        self.session_id = session_id
        self.turn_id = turn_id
        self.attempt = attempt
        self._publisher = publisher
        self._pending: list[list[Any]] = []
        self._flushed: asyncio.Future[None] | None = None
        self._first = True
        self._encode_token = TokenEncoder(session_id, turn_id, attempt)
        self.since = 0.0
        """Loop time at which the oldest pending event was put."""

    def put(self, actions: list[Action]) -> None:
        if actions and not self._pending:
            self.since = asyncio.get_running_loop().time()
        for kind, payload in actions:
            last = self._pending[-1] if self._pending else None
            if kind == "token" and last and last[0] == KIND_TOKEN and self._publisher.coalesce:
                self._pending[-1][1] += payload
            elif kind == "token":
                self._pending.append([KIND_TOKEN, payload])
            else:
                self._pending.append([KIND_TOOL if kind == "tool" else KIND_RESET, payload])
        if actions:
            # The first event goes out at once: coalescing must not delay the first token.
            self._publisher.ready(self, now=self._first)
            self._first = False

    def take(self) -> list[Triple]:
        """The pending events as publish-script triples (kind, body, text)."""
        batch, self._pending = self._pending, []
        sid, tid, attempt = self.session_id, self.turn_id, self.attempt
        out: list[Triple] = []
        for kind, payload in batch:
            if kind == KIND_TOKEN:
                out.append((kind, self._encode_token(payload), payload))
            elif kind == KIND_TOOL:
                fields = {**payload, "attempt": attempt}
                out.append((kind, encode_event(sid, tid, EventType.TOOL_CALL, fields), ""))
            else:
                fields = {"attempt": attempt}
                out.append((kind, encode_event(sid, tid, EventType.TURN_RESTARTED, fields), ""))
        return out

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    async def drain(self) -> None:
        """Return once everything put so far is in Redis (raises what the flush raised)."""
        while self._pending or self._flushed is not None:
            if self._flushed is None:
                self._publisher.ready(self, now=True)
                await asyncio.sleep(0)  # the flush starts on the loop's next turn
            else:
                await asyncio.shield(self._flushed)


class StreamPublisher:
    """Flushes every outbox of this event loop on one clock."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        flush_ms: int,
        maxlen: int,
        direct_url: str | None = None,
        after_flush: Callable[[], None] | None = None,
    ) -> None:
        """``direct_url`` (see ``workers.resp.direct_url``): flushes are written at once over
        a connection of the publisher's; without it they go through ``client``."""
        self._script = AsyncScript(client, PUBLISH_LUA)
        self._direct_url = direct_url
        self._after_flush = after_flush
        self._direct: RespConnection | None = None
        self._connecting = asyncio.Lock()
        self._sha = hashlib.sha1(PUBLISH_LUA.encode()).hexdigest()
        self._interval = flush_ms / 1000
        self._maxlen = maxlen
        self._ready: dict[int, Outbox] = {}
        self._flushes: set[asyncio.Future[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        """Loop time at which ``_timer`` flushes."""
        self._last_due = -math.inf
        """Loop time at which the last flush was due: the clock the intervals count from."""

    @property
    def coalesce(self) -> bool:
        """False with an interval of 0: then every delta is its own event."""
        return self._interval > 0

    def outbox(self, session_id: str, turn_id: str, attempt: int) -> Outbox:
        return Outbox(self, session_id, turn_id, attempt)

    def ready(self, outbox: Outbox, *, now: bool = False) -> None:
        """Flush ``outbox`` at once (``now``), else one interval after the last flush was due,
        and never later than one interval after its oldest pending event was put (even if
        that event waited for the outbox's previous flush)."""
        self._ready[id(outbox)] = outbox
        loop = asyncio.get_running_loop()
        if now or not self.coalesce:
            due = loop.time()
        else:
            since = outbox.since
            due = max(since, min(since, self._last_due) + self._interval)
        if self._timer is not None:
            if due >= self._due:
                return
            self._timer.cancel()
        self._timer = loop.call_at(due, self._start_flush)
        self._due = due

    def _start_flush(self) -> None:
        """Send every ready outbox that has no flush in flight (one at a time keeps order)."""
        self._timer = None
        batch = [o for o in self._ready.values() if o.pending and o._flushed is None]
        for outbox in batch:
            del self._ready[id(outbox)]
        self._ready = {k: o for k, o in self._ready.items() if o.pending}
        if not batch:
            return
        self._last_due = self._due
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for outbox in batch:
            outbox._flushed = done
        groups = [(o.session_id, o.turn_id, o.take()) for o in batch]
        if self._script.on_cluster:
            calls = [publish_call(self._maxlen, KEEP_EXPIRY, [group]) for group in groups]
        else:
            calls = [publish_call(self._maxlen, KEEP_EXPIRY, groups)]
        sent = self._send(calls[0]) if self._direct and self._direct.usable else None
        self._flushes.add(task := asyncio.ensure_future(self._flush(calls, sent, batch, done)))
        task.add_done_callback(self._flushes.discard)
        if self._after_flush is not None:
            self._after_flush()

    def _send(self, call: Call) -> asyncio.Future[Any]:
        """Write the call now (the direct connection is open)."""
        assert self._direct is not None
        keys, args = call
        return self._direct.send("EVALSHA", self._sha, len(keys), *keys, *args)

    async def _publish_direct(self, call: Call, sent: asyncio.Future[Any] | None) -> None:
        """Wait for a call written by ``_start_flush``, else open the connection and write it
        here; a Redis that lost its scripts (restarted, flushed) gets the script again."""
        if sent is None:
            async with self._connecting:
                if self._direct is None or not self._direct.usable:
                    assert self._direct_url is not None
                    self._direct = await RespConnection.open(self._direct_url, name=CLIENT_NAME)
            sent = self._send(call)
        try:
            await sent
        except redis.exceptions.NoScriptError:
            assert self._direct is not None
            await self._direct.send("SCRIPT", "LOAD", PUBLISH_LUA)
            await self._send(call)

    async def _flush(
        self,
        calls: list[Call],
        sent: asyncio.Future[Any] | None,
        batch: list[Outbox],
        done: asyncio.Future[None],
    ) -> None:
        try:
            if self._direct_url is None or self._script.on_cluster:
                await self._script.many(calls)
            else:
                await self._publish_direct(calls[0], sent)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # marked retrieved: each waiter re-raises it from drain()
            if not isinstance(exc, Exception):
                raise
        else:
            done.set_result(None)
        finally:
            for outbox in batch:
                outbox._flushed = None
                if outbox.pending:
                    self.ready(outbox)
