"""The stream loop's own Redis connection, and the publisher's flushes over it (real Redis)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio
import redis.exceptions
import uvloop

from tests.conftest import TEST_REDIS_URL
from tokenwindow.constants import events_stream_key
from tokenwindow.events import decode_event
from tokenwindow.settings import load_settings
from workers.publisher import CLIENT_NAME, StreamPublisher
from workers.resp import RespConnection, direct_url

T = TypeVar("T")


def run(test: Callable[[], Awaitable[T]]) -> T:
    """On uvloop, as the workers' stream loop runs."""
    return uvloop.run(asyncio.wait_for(test(), 10))


def texts(store: redis.Redis, session_id: str) -> list[str]:
    entries: Any = store.xrange(events_stream_key(session_id))
    return [decode_event(fields[b"event"], entry_id)["text"] for entry_id, fields in entries]


def publisher_connection(store: redis.Redis) -> str:
    """This database's publisher connection: other test processes have theirs elsewhere."""
    db = store.connection_pool.connection_kwargs["db"]
    clients: Any = store.client_list()
    return str(next(c["id"] for c in clients if c["name"] == CLIENT_NAME and int(c["db"]) == db))


def test_a_command_is_on_the_wire_before_the_loop_runs_again(redis_client: redis.Redis) -> None:
    async def scenario() -> object:
        connection = await RespConnection.open(TEST_REDIS_URL, name="test")
        reply = connection.send("SET", "written", "now")
        deadline = time.monotonic() + 2.0
        seen = redis_client.get("written")
        while seen is None and time.monotonic() < deadline:  # blocking: the loop cannot run
            seen = redis_client.get("written")
        assert await reply == b"OK"
        connection.close()
        return seen

    assert run(scenario) == b"now"


def test_pipelined_replies_resolve_in_order_and_errors_as_redis_py_raises_them(
    redis_client: redis.Redis,
) -> None:
    redis_client.set("text", "not a number")

    async def scenario() -> list[Any]:
        connection = await RespConnection.open(TEST_REDIS_URL, name="test")
        sent = [connection.send("INCR", "counter") for _ in range(50)]
        sent += [connection.send("INCR", "text"), connection.send("EVALSHA", "0" * 40, 0)]
        replies = await asyncio.gather(*sent, return_exceptions=True)
        connection.close()
        return replies

    replies = run(scenario)

    assert replies[:50] == list(range(1, 51))
    assert type(replies[50]) is redis.exceptions.ResponseError
    assert "not an integer" in str(replies[50])
    assert isinstance(replies[51], redis.exceptions.NoScriptError)


def test_the_url_selects_the_database_and_bad_credentials_say_so(redis_client: redis.Redis) -> None:
    base, _, db = TEST_REDIS_URL.rpartition("/")

    async def scenario() -> None:
        connection = await RespConnection.open(TEST_REDIS_URL, name="test")
        await connection.send("SET", "where", db)
        connection.close()
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGPASS"):
            await RespConnection.open(f"{base.replace('//', '//user:wrong@')}/{db}", name="test")

    run(scenario)

    assert redis_client.get("where") == db.encode()


def test_an_unreachable_redis_and_a_lost_connection_are_connection_errors() -> None:
    async def scenario() -> None:
        with pytest.raises(redis.exceptions.ConnectionError, match="cannot reach Redis"):
            await RespConnection.open("redis://127.0.0.1:1/0", name="test")
        connection = await RespConnection.open(TEST_REDIS_URL, name="test")
        waiting = connection.send("BLPOP", "never-filled", 5)
        connection.close()
        with pytest.raises(redis.exceptions.ConnectionError, match="lost"):
            await waiting
        assert not connection.usable
        with pytest.raises(redis.exceptions.ConnectionError):
            await connection.send("PING")

    run(scenario)


def test_only_plain_redis_urls_get_a_direct_connection() -> None:
    assert direct_url(load_settings(redis_url="redis://h:6379/2")) == "redis://h:6379/2"
    assert direct_url(load_settings(redis_url="rediss://h:6380/2")) is None
    assert (
        direct_url(
            load_settings(
                redis_url="redis://h:6379/2", redis_cluster=True, broker_url="redis://b:6379/0"
            )
        )
        is None
    )


def test_flushes_survive_a_flushed_script_cache_and_a_killed_connection(
    redis_client: redis.Redis,
) -> None:
    """What a restarted Redis does to the publisher: its script is gone, its connection cut.
    The flush in flight fails (the turn retries, as with redis-py); the next one reconnects."""

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(TEST_REDIS_URL)
        publisher = StreamPublisher(client, flush_ms=0, maxlen=100, direct_url=TEST_REDIS_URL)
        outbox = publisher.outbox("s-resp", "t1", 1)
        outbox.put([("token", "one ")])
        await outbox.drain()

        redis_client.script_flush()
        outbox.put([("token", "two ")])
        await outbox.drain()

        redis_client.client_kill_filter(_id=publisher_connection(redis_client))
        outbox.put([("token", "lost ")])
        with pytest.raises(redis.exceptions.ConnectionError):
            await outbox.drain()
        outbox.put([("token", "three")])
        await outbox.drain()
        await client.aclose()

    run(scenario)

    assert texts(redis_client, "s-resp") == ["one ", "two ", "three"]
