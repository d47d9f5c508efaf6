"""The streaming process's cycle collector: CPython's schedule, run at moments the loop picks."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterator

import pytest
import redis.asyncio

from tests.conftest import TEST_REDIS_URL
from workers.collector import OLD_FLOOR, OLD_GROWTH, Collector
from workers.publisher import StreamPublisher


class Node:
    """Refers to itself: only the cycle collector can free it."""

    def __init__(self) -> None:
        self.me = self


def unreachable_cycle() -> weakref.ref[Node]:
    return weakref.ref(Node())


@pytest.fixture
def automatic_collection_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.collect()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.enable()


@pytest.mark.usefixtures("automatic_collection_restored")
def test_collect_frees_cycles_once_the_young_generation_is_due() -> None:
    loop = asyncio.new_event_loop()
    try:
        collector = Collector(loop)
        gc.disable()
        gc.collect()
        cycle = unreachable_cycle()
        collector.collect()
        assert cycle() is not None, "nothing was due yet: no pass may run"
        kept = [[] for _ in range(gc.get_threshold()[0] + 1)]
        collector.collect()
        assert cycle() is None
        assert gc.get_count()[0] < len(kept)
    finally:
        loop.close()


def old_cycle_after(grown_by: Callable[[int], int]) -> bool:
    """Whether a cycle in the old generation survives the collector's passes while that
    generation grows by ``grown_by(its size)`` objects (small generations, the same schedule)."""
    gc.set_threshold(10, 2, 2)
    gc.disable()
    loop = asyncio.new_event_loop()
    kept: list[list[int]] = []

    def passes(n: int) -> None:
        for _ in range(n):
            kept.extend([] for _ in range(11))
            collector.collect()

    try:
        collector = Collector(loop)
        holder = [Node()]
        cycle = weakref.ref(holder[0])
        gc.collect(1)  # the cycle moves to the old generation while still reachable
        holder.clear()
        passes(50)
        assert cycle() is not None, "the old generation barely grew: no full pass was due"
        kept.extend([] for _ in range(grown_by(len(gc.get_objects(2)))))
        passes(8)
        return cycle() is not None
    finally:
        loop.close()


@pytest.mark.usefixtures("automatic_collection_restored")
def test_a_full_pass_runs_once_the_old_generation_has_grown_by_a_quarter_and_the_floor() -> None:
    """What piles up (garbage in cycles among it) sets off the long pass."""
    assert not old_cycle_after(lambda old: max(int(old * (OLD_GROWTH - 1)), OLD_FLOOR) + 1)


@pytest.mark.usefixtures("automatic_collection_restored")
def test_growth_under_the_floor_sets_off_no_full_pass_however_small_the_old_generation() -> None:
    """A worker just started has a nearly empty old generation (the rest is frozen): its
    first streams' state, many times that size but gone when they end, must not set one off."""
    gc.freeze()
    try:
        assert old_cycle_after(lambda old: max(old, OLD_FLOOR // 2))
    finally:
        gc.unfreeze()


@pytest.mark.usefixtures("automatic_collection_restored")
def test_started_it_turns_automatic_collection_off_and_an_idle_loop_still_collects() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        Collector(loop, idle_seconds=0.05).start()
        assert not gc.isenabled()
        cycle = unreachable_cycle()
        kept = [[] for _ in range(gc.get_threshold()[0] + 1)]
        deadline = time.monotonic() + 5
        while cycle() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cycle() is None, f"not collected with {len(kept)} new objects and an idle loop"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_the_publisher_hands_over_after_each_flush_it_writes() -> None:
    """Where the engine's collector runs: once per flush, just after the flush was written."""
    flushes_written: list[int] = []

    async def scenario() -> None:
        client = redis.asyncio.Redis.from_url(TEST_REDIS_URL)
        publisher = StreamPublisher(
            client,
            flush_ms=10,
            maxlen=100,
            direct_url=TEST_REDIS_URL,
            after_flush=lambda: flushes_written.append(len(flushes_written)),
        )
        outbox = publisher.outbox("s-collector", "t1", 1)
        for word in ("one ", "two ", "three"):
            outbox.put([("token", word)])
            await outbox.drain()
        await client.aclose()

    asyncio.run(scenario())
    assert flushes_written == [0, 1, 2]
