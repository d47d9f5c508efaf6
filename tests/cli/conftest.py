"""Real workers for the distributed ``tokenwindow compress`` tests, on the test Redis database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.conftest import TEST_REDIS_URL
from tests.harness import WorkerProcess

WORKER_ENV = {"REDIS_URL": TEST_REDIS_URL}


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker (2 processes) on a flushed database for the whole module."""
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = WorkerProcess(WORKER_ENV, log_path=log).start()
    yield process
    process.stop()
