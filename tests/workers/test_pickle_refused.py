"""A worker refuses a pickled task message, logs why, and keeps serving JSON tasks.

Pickle on a broker anyone on the network can write to is remote code execution; the message
here would create a marker file if it were ever unpickled.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult
from kombu.connection import Connection
from kombu.entity import Queue

from tests.conftest import TEST_REDIS_URL
from tests.harness import WorkerProcess
from tokenwindow.constants import QUEUE_FAST, TASK_COUNT_TOKENS

REFUSAL = "Refusing to deserialize untrusted content of type pickle"
WAIT_SECONDS = 60.0

pytestmark = pytest.mark.slow


class TouchOnUnpickle:
    """Unpickling this creates ``marker``: proof that the body was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def publish_pickled_task(url: str, marker: Path) -> str:
    """A protocol-2 task message for a real task name, as a producer using pickle sends it."""
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": TASK_COUNT_TOKENS,
        "id": task_id,
        "root_id": task_id,
        "parent_id": None,
        "group": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": "test",
    }
    body: tuple[object, ...] = (
        (TouchOnUnpickle(marker),),
        {},
        {"callbacks": None, "errbacks": None},
    )
    queue = Queue(QUEUE_FAST)  # type: ignore[no-untyped-call]
    with Connection(url) as connection:  # type: ignore[no-untyped-call]
        producer = connection.Producer(serializer="pickle")
        producer.publish(
            body,
            exchange=queue.exchange,
            routing_key=QUEUE_FAST,
            headers=headers,
            declare=[queue],
            correlation_id=task_id,
        )
    return task_id


def wait_for_log(path: Path, text: str, process: WorkerProcess) -> str:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        log = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        if text in log:
            return log
        assert process.process is not None and process.process.poll() is None, log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the worker log within {WAIT_SECONDS} s")


def test_pickled_message_is_refused_and_the_worker_carries_on(
    redis_client: redis.Redis,
    worker_factory: type[WorkerProcess],
    tmp_path: Path,
) -> None:
    worker = worker_factory({"REDIS_URL": TEST_REDIS_URL}, queues=(QUEUE_FAST,)).start()
    assert worker.log_path is not None
    marker = tmp_path / "unpickled"

    publish_pickled_task(TEST_REDIS_URL, marker)
    wait_for_log(worker.log_path, REFUSAL, worker)

    client = Celery(broker=TEST_REDIS_URL, backend=TEST_REDIS_URL, set_as_current=False)
    try:
        sent = client.send_task(
            TASK_COUNT_TOKENS,
            kwargs={"model": "gpt-4o", "text": "hello world"},
            queue=QUEUE_FAST,
        )
        result = AsyncResult(sent.id, app=client).get(timeout=WAIT_SECONDS)
    finally:
        client.close()
    assert isinstance(result, dict)
    assert result["tokens"] == 2
    assert not marker.exists()
    # The refused message was acknowledged, not left to be redelivered forever.
    assert redis_client.llen(QUEUE_FAST) == 0
