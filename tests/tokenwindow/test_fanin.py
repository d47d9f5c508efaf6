"""A client's subscriptions share one blocking read, and each still gets its events once, in order.

Each test runs on a private redis-server, so ``INFO clients`` counts only this test's reads.
Events are written by the service's own publish script (``AsyncEventLog``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from tests.redis_server import RedisServer
from tokenwindow import fanin
from tokenwindow.client import TokenManagementClient
from tokenwindow.constants import events_stream_key
from tokenwindow.errors import InvalidInputError
from tokenwindow.eventlog import AsyncEventLog
from tokenwindow.events import Event, EventType
from tokenwindow.fanin import StreamFanIn

WAIT_SECONDS = 10.0
"""Generous: every wait below ends within milliseconds when the code is right."""


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as private:
        yield private


@pytest.fixture
def url(server: RedisServer) -> str:
    store = redis.Redis.from_url(server.url())
    store.flushdb()
    store.close()
    return server.url()


def run(
    url: str, scenario: Callable[[TokenManagementClient, AsyncEventLog], Awaitable[Any]]
) -> Any:
    async def main() -> Any:
        async with TokenManagementClient(url) as client:
            log = AsyncEventLog(client.redis, maxlen=10_000, ttl_seconds=600)
            return await asyncio.wait_for(scenario(client, log), 60)

    return asyncio.run(main())


async def token(log: AsyncEventLog, session_id: str, text: str) -> Event:
    return await log.publish(session_id, "t1", EventType.TOKEN, text=text)


async def take(events: AsyncIterator[Event], n: int) -> list[str]:
    out: list[str] = []
    async for event in events:
        out.append(event["text"])
        if len(out) == n:
            break
    return out


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not await check():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def blocked(client: TokenManagementClient, reads: int) -> bool:
    """Whether Redis holds exactly ``reads`` blocked reads (this test's server only)."""
    info = await client.redis.info("clients")
    return int(info["blocked_clients"]) == reads


def test_many_subscriptions_share_one_blocked_read_and_each_gets_its_own_events(url: str) -> None:
    sessions = [f"s-many-{i}" for i in range(50)]

    async def scenario(client: TokenManagementClient, log: AsyncEventLog) -> list[list[str]]:
        readers = [asyncio.create_task(take(client.subscribe(s), 3)) for s in sessions]
        await until(lambda: _subscribed(client, len(sessions)))
        await until(lambda: blocked(client, 1))  # one blocked read, not one per subscription
        for round_ in range(3):
            await asyncio.gather(*(token(log, s, f"{s}/{round_}") for s in sessions))
        return list(await asyncio.gather(*readers))

    got = run(url, scenario)
    assert got == [[f"{s}/{r}" for r in range(3)] for s in sessions]


async def _subscribed(client: TokenManagementClient, n: int) -> bool:
    fan_in = client._fan_in
    return fan_in is not None and len(fan_in._reading) == n + 1  # and the doorbell


def test_a_subscription_made_during_a_blocked_read_is_served_at_once(url: str) -> None:
    """The shared read blocks for a minute here: without the doorbell, b's event would wait."""

    async def scenario(client: TokenManagementClient, log: AsyncEventLog) -> str:
        patient = redis.asyncio.Redis.from_url(url, decode_responses=True, socket_timeout=None)
        shared = StreamFanIn(patient, block_ms=60_000, count=100)
        first = shared.follow(events_stream_key("s-a"), "0", None)
        waiting = asyncio.create_task(anext(first))
        await until(lambda: blocked(client, 1))
        later = shared.follow(events_stream_key("s-b"), "0", None)
        arrived = asyncio.create_task(anext(later))
        await until(lambda: _names(shared, "s-b"))
        await token(log, "s-b", "hello b")
        _, fields = await asyncio.wait_for(arrived, WAIT_SECONDS)
        await token(log, "s-a", "hello a")
        await asyncio.wait_for(waiting, WAIT_SECONDS)
        for follower in (first, later):
            await follower.aclose()
        await shared.close()
        await patient.aclose()
        return fields["event"]

    assert '"text":"hello b"' in run(url, scenario)


async def _names(shared: StreamFanIn, session_id: str) -> bool:
    return events_stream_key(session_id) in shared._reading


def test_a_replay_that_joins_while_the_shared_read_is_ahead_misses_nothing(url: str) -> None:
    """The shared read follows s-x from its newest entry; a replay from the start joins, and an
    entry arrives before the read starts over: the replay still gets every entry, in order."""

    async def scenario(client: TokenManagementClient, log: AsyncEventLog) -> tuple[Any, Any]:
        class Racing(StreamFanIn):
            async def _ring(self) -> None:
                await token(log, "s-x", "e4")
                await super()._ring()

        published = [await token(log, "s-x", f"e{i}") for i in range(1, 4)]
        shared = Racing(client.redis, block_ms=1_000, count=100)
        key = events_stream_key("s-x")
        live = shared.follow(key, published[-1]["id"], None)
        live_next = asyncio.create_task(anext(live))
        await until(lambda: _names(shared, "s-x"))
        replay = shared.follow(key, "0", None)
        replayed = [(await anext(replay))[1]["event"] for _ in range(4)]
        live_got = (await asyncio.wait_for(live_next, WAIT_SECONDS))[1]["event"]
        for follower in (live, replay):
            await follower.aclose()
        await shared.close()
        return replayed, live_got

    replayed, live_got = run(url, scenario)
    assert [_text(e) for e in replayed] == ["e1", "e2", "e3", "e4"]
    assert _text(live_got) == "e4"


def _text(raw: str) -> str:
    return str(json.loads(raw)["text"])


def test_subscribers_of_one_session_from_different_points_each_get_theirs_once(url: str) -> None:
    async def scenario(client: TokenManagementClient, log: AsyncEventLog) -> tuple[Any, Any]:
        published = [await token(log, "s-one", f"w{i}") for i in range(5)]
        everything = asyncio.create_task(take(client.subscribe("s-one", "0"), 10))
        resumed = asyncio.create_task(take(client.subscribe("s-one", published[2]["id"]), 7))
        live = asyncio.create_task(take(client.subscribe("s-one"), 5))
        await until(lambda: _subscribed(client, 1))
        for i in range(5, 10):
            await token(log, "s-one", f"w{i}")
        return await asyncio.gather(everything, resumed, live)

    everything, resumed, live = run(url, scenario)
    assert everything == [f"w{i}" for i in range(10)]
    assert resumed == [f"w{i}" for i in range(3, 10)]
    assert live == [f"w{i}" for i in range(5, 10)]


def test_a_subscriber_that_stops_taking_events_stalls_no_one_and_loses_nothing(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanin, "BACKLOG", 20)

    async def scenario(client: TokenManagementClient, log: AsyncEventLog) -> tuple[Any, Any]:
        stalled = client.subscribe("s-stalled", "0")
        await token(log, "s-stalled", "x0")
        first = await take(stalled, 1)  # then it takes nothing while 119 more arrive
        busy = asyncio.create_task(take(client.subscribe("s-busy"), 100))
        await until(lambda: _subscribed(client, 2))
        for i in range(1, 100):
            await token(log, "s-stalled", f"x{i}")
            await token(log, "s-busy", f"y{i}")
        await token(log, "s-busy", "y100")
        busy_got = await asyncio.wait_for(busy, WAIT_SECONDS)
        for i in range(100, 120):  # while it catches up, more arrives
            await token(log, "s-stalled", f"x{i}")
        return busy_got, first + await take(stalled, 119)

    busy_got, stalled_got = run(url, scenario)
    assert busy_got == [f"y{i}" for i in range(1, 101)]
    assert stalled_got == [f"x{i}" for i in range(120)]


def test_a_dropped_connection_resumes_every_subscription_where_it_was(
    url: str, server: RedisServer
) -> None:
    async def scenario(client: TokenManagementClient, log: AsyncEventLog) -> list[list[str]]:
        readers = [asyncio.create_task(take(client.subscribe(f"s-drop-{i}"), 4)) for i in range(3)]
        await until(lambda: _subscribed(client, 3))
        for i in range(3):
            await token(log, f"s-drop-{i}", "before")
        admin = redis.asyncio.Redis.from_url(server.url())
        await admin.client_kill_filter(_type="normal", skipme=True)
        await admin.aclose()
        for n in range(3):
            for i in range(3):
                await token(log, f"s-drop-{i}", f"after{n}")
        return list(await asyncio.gather(*readers))

    got = run(url, scenario)
    assert got == [["before", "after0", "after1", "after2"]] * 3


def test_the_shared_read_ends_with_its_last_subscription(url: str) -> None:
    async def scenario(client: TokenManagementClient, log: AsyncEventLog) -> None:
        readers = [asyncio.create_task(take(client.subscribe(f"s-end-{i}"), 1)) for i in range(5)]
        await until(lambda: _subscribed(client, 5))
        await asyncio.gather(*(token(log, f"s-end-{i}", "only") for i in range(5)))
        await asyncio.gather(*readers)
        await until(lambda: blocked(client, 0))

    run(url, scenario)


def test_a_resume_point_that_is_no_entry_id_is_refused_by_name(url: str) -> None:
    async def scenario(client: TokenManagementClient, log: AsyncEventLog) -> None:
        with pytest.raises(InvalidInputError, match="from_id"):
            await anext(client.subscribe("s-bad", "$"))

    run(url, scenario)
