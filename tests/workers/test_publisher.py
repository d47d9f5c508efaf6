"""When streamed events reach Redis: the first at once, later ones within one flush interval.

Each test runs on a private redis-server it can pause, and reads when each event arrived from
its stream entry id (Redis's own clock, in milliseconds).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import uvloop

from tests.redis_server import RedisServer
from tokenwindow.constants import events_stream_key
from tokenwindow.events import decode_event
from workers.publisher import StreamPublisher

SESSION = "s-publisher"
INTERVAL_MS = 300


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as private:
        yield private


def publish(
    server: RedisServer, flush_ms: int, scenario: Callable[[StreamPublisher], Awaitable[None]]
) -> list[tuple[int, str]]:
    """Run ``scenario`` with a publisher on uvloop (as the workers' stream loop runs), then
    return ``(arrival ms, text)`` of every token event in the session's stream."""

    async def run() -> None:
        client = redis.asyncio.Redis.from_url(server.url())
        publisher = StreamPublisher(client, flush_ms=flush_ms, maxlen=100, direct_url=server.url())
        try:
            await scenario(publisher)
        finally:
            await client.aclose()

    store = redis.Redis.from_url(server.url())
    store.flushdb()
    uvloop.run(asyncio.wait_for(run(), 10))
    entries: Any = store.xrange(events_stream_key(SESSION))
    store.close()
    return [
        (int(entry_id.split(b"-")[0]), decode_event(fields[b"event"], entry_id)["text"])
        for entry_id, fields in entries
    ]


def test_deltas_within_an_interval_are_one_event_after_the_first_went_out_at_once(
    server: RedisServer,
) -> None:
    async def scenario(publisher: StreamPublisher) -> None:
        outbox = publisher.outbox(SESSION, "t1", 1)
        outbox.put([("token", "first ")])
        await outbox.drain()  # in Redis, over a connection now open
        outbox.put([("token", "second ")])
        await asyncio.sleep(0.02)
        outbox.put([("token", "third")])
        await asyncio.sleep(2 * INTERVAL_MS / 1000)
        assert not outbox.pending

    (first_at, first), (joined_at, joined) = publish(server, INTERVAL_MS, scenario)
    assert (first, joined) == ("first ", "second third")
    # "second" was put once "first" was in Redis, and waited one interval for the rest.
    assert joined_at - first_at >= INTERVAL_MS * 0.9


def test_a_delta_after_a_quiet_interval_goes_out_at_once(server: RedisServer) -> None:
    """A stream slower than the interval (a slow model, a tool call being thought out) pays
    no coalescing delay: nothing went out in the last interval, so there is nothing to join."""

    async def scenario(publisher: StreamPublisher) -> None:
        outbox = publisher.outbox(SESSION, "t1", 1)
        outbox.put([("token", "first ")])
        await outbox.drain()
        await asyncio.sleep(1.2 * INTERVAL_MS / 1000)
        outbox.put([("token", "later")])
        await asyncio.sleep(0.3 * INTERVAL_MS / 1000)
        assert not outbox.pending

    (first_at, first), (later_at, later) = publish(server, INTERVAL_MS, scenario)
    assert (first, later) == ("first ", "later")
    assert later_at - first_at < 1.5 * INTERVAL_MS


def test_intervals_count_from_the_last_flush_not_from_a_late_put(server: RedisServer) -> None:
    """A delta that reaches the loop late (the loop was held up, by a collection pass or the
    interpreter lock, just after a flush) goes out one interval after that flush: the hold-up
    is not added to its wait."""

    async def scenario(publisher: StreamPublisher) -> None:
        outbox = publisher.outbox(SESSION, "t1", 1)
        outbox.put([("token", "first ")])
        await outbox.drain()
        time.sleep(0.6 * INTERVAL_MS / 1000)  # the loop is held up
        outbox.put([("token", "held")])
        await asyncio.sleep(1.2 * INTERVAL_MS / 1000)
        assert not outbox.pending

    (first_at, first), (held_at, held) = publish(server, INTERVAL_MS, scenario)
    assert (first, held) == ("first ", "held")
    assert 0.9 * INTERVAL_MS <= held_at - first_at < 1.3 * INTERVAL_MS


def test_an_interval_of_zero_publishes_every_delta_as_its_own_event(server: RedisServer) -> None:
    async def scenario(publisher: StreamPublisher) -> None:
        outbox = publisher.outbox(SESSION, "t1", 1)
        for word in ("one ", "two ", "three"):
            outbox.put([("token", word)])
        await outbox.drain()

    assert [text for _, text in publish(server, 0, scenario)] == ["one ", "two ", "three"]


def test_a_delta_that_waited_for_the_previous_flush_goes_out_as_soon_as_it_lands(
    server: RedisServer,
) -> None:
    """An outbox has one flush in flight at a time (that keeps its events in order). A delta
    put while Redis is slow to answer waits for that flush, then goes out at once if its
    interval is over, rather than waiting another interval after it."""

    async def scenario(publisher: StreamPublisher) -> None:
        outbox = publisher.outbox(SESSION, "t1", 1)
        outbox.put([("token", "early ")])
        await outbox.drain()  # the connection is open; Redis answers again
        outbox.put([("token", "slow ")])
        server.pause()
        await asyncio.sleep(INTERVAL_MS / 1000 + 0.02)  # "slow" goes out, unanswered
        outbox.put([("token", "waited")])
        await asyncio.sleep(1.5 * INTERVAL_MS / 1000)  # its interval ends while paused
        server.resume()
        await asyncio.sleep(2 * INTERVAL_MS / 1000)
        assert not outbox.pending

    *_, (slow_at, slow), (waited_at, waited) = publish(server, INTERVAL_MS, scenario)
    assert (slow, waited) == ("slow ", "waited")
    assert waited_at - slow_at < INTERVAL_MS / 2
