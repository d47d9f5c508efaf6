"""Task events for Flower: every one arrives, in batches on the consumer's clock."""

from __future__ import annotations

import base64
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.conftest import TEST_REDIS_URL
from tests.harness import WorkerProcess
from tokenwindow.constants import QUEUE_FAST, TASK_COUNT_TOKENS
from tokenwindow.producer import TaskProducer
from workers.consumer import EVENT_FLUSH_SECONDS

pytestmark = pytest.mark.slow

TASKS = 40
SEND_GAP_SECONDS = 0.02
"""Tasks arrive one by one, so that every event would otherwise be a publish of its own."""
WAIT_SECONDS = 60.0
TASK_EVENTS = ("task-received", "task-started", "task-succeeded")
CELERY_BUFFER_LIMIT = 24
"""Celery's event dispatcher publishes a buffer this full at once, whatever the clock says."""


def task_events(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The events in one published kombu message (Celery's ``task.multi`` carries a list)."""
    envelope = json.loads(message["data"])
    body = envelope["body"]
    if envelope["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    events = json.loads(body)
    return events if isinstance(events, list) else [events]


@pytest.fixture
def event_feed() -> Iterator[redis.client.PubSub]:
    """Every task event any worker publishes on the test broker (kombu's fanout channels)."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    feed = client.pubsub(ignore_subscribe_messages=True)
    feed.psubscribe("*celeryev/task.*")
    feed.get_message(timeout=1.0)  # the subscription is in place before any task is sent
    try:
        yield feed
    finally:
        feed.close()
        client.close()


def test_every_task_event_arrives_and_they_go_out_in_batches(
    worker_factory: type[WorkerProcess], event_feed: redis.client.PubSub
) -> None:
    worker = worker_factory(
        {"REDIS_URL": TEST_REDIS_URL}, queues=(QUEUE_FAST,), pool="threads", concurrency=4
    ).start()
    producer = TaskProducer(TEST_REDIS_URL)
    started = time.monotonic()
    try:
        sent = []
        for n in range(TASKS):
            sent.append(producer.send(TASK_COUNT_TOKENS, {"model": "gpt-4o", "text": f"n{n}"}))
            time.sleep(SEND_GAP_SECONDS)
    finally:
        producer.close()
    seen: dict[str, set[str]] = defaultdict(set)
    publishes = 0
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and any(seen[t] != set(TASK_EVENTS) for t in sent):
        message = event_feed.get_message(timeout=1.0)
        if message is None:
            continue
        ours = [e for e in task_events(message) if e.get("hostname") == worker.node]
        publishes += bool(ours)
        for event in ours:
            seen[event["uuid"]].add(event["type"])
    elapsed = time.monotonic() - started
    missing = {t: set(TASK_EVENTS) - seen[t] for t in sent if seen[t] != set(TASK_EVENTS)}
    assert not missing, f"events never published: {missing}"
    # One event at a time would be three publishes per task; the clock allows one per interval
    # (and Celery one per full buffer, should a slow worker let events pile up).
    allowed = elapsed / EVENT_FLUSH_SECONDS + len(sent) * len(TASK_EVENTS) / CELERY_BUFFER_LIMIT
    assert publishes <= allowed + 2, (publishes, elapsed)
    assert publishes < TASKS, "several tasks' events share a publish"
