"""The step slot: one thread at a time runs turn steps beside the loop, none while it streams."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from celery.worker.consumer import Consumer as CeleryConsumer

from workers.consumer import Consumer
from workers.engine import get_engine
from workers.steps import STEPS, StepSlot

JOIN_SECONDS = 5.0
STILL_BLOCKED_SECONDS = 0.2


def in_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def enter(slot: StepSlot, entered: list[str], name: str) -> Callable[[], None]:
    def run() -> None:
        with slot.held():
            entered.append(name)

    return run


def test_a_slot_that_was_never_opened_lets_every_thread_through() -> None:
    slot, entered = StepSlot(), list[str]()
    with slot.held():
        in_thread(enter(slot, entered, "other")).join(JOIN_SECONDS)
    assert entered == ["other"]


def test_an_open_slot_runs_one_thread_at_a_time() -> None:
    slot, entered = StepSlot(), list[str]()
    slot.open()
    with slot.held(), slot.held():  # the holder may enter again
        other = in_thread(enter(slot, entered, "other"))
        other.join(STILL_BLOCKED_SECONDS)
        assert other.is_alive() and entered == []
    other.join(JOIN_SECONDS)
    assert entered == ["other"]


def test_a_waiting_holder_lets_another_thread_run_and_then_holds_the_slot_again() -> None:
    slot, entered = StepSlot(), list[str]()
    slot.open()
    with slot.held():
        with slot.waiting():
            in_thread(enter(slot, entered, "while waiting")).join(JOIN_SECONDS)
        assert entered == ["while waiting"]
        after = in_thread(enter(slot, entered, "after"))
        after.join(STILL_BLOCKED_SECONDS)
        assert after.is_alive()
    after.join(JOIN_SECONDS)
    assert entered == ["while waiting", "after"]


def test_a_task_thread_gives_the_slot_up_while_its_reply_streams() -> None:
    """Streams run at once: a turn whose reply streams never holds up the next turn's steps."""
    engine, entered = get_engine(), list[str]()  # the engine opens the process's slot

    async def stream() -> list[str]:
        next_turn = in_thread(enter(STEPS, entered, "next turn"))
        await asyncio.to_thread(next_turn.join, JOIN_SECONDS)
        return list(entered)

    with STEPS.held():
        assert engine.run(stream()) == ["next turn"]


def test_the_consumer_hands_a_received_task_to_the_pool_inside_the_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    get_engine()  # opens the process's slot
    seen: list[tuple[str, bool]] = []

    def celery_handler(self: Consumer, *args: Any, **kwargs: Any) -> Callable[[str], None]:
        return lambda message: seen.append((message, STEPS.holding))

    monkeypatch.setattr(CeleryConsumer, "create_task_handler", celery_handler)
    on_task_received = Consumer.create_task_handler(object.__new__(Consumer))
    on_task_received("a task")
    assert seen == [("a task", True)]
    assert not STEPS.holding
