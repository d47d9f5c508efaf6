"""kill -9 of a worker while summarizing and while ingesting: every turn completes once.

The mid-stream kill is ``tests/tasks/test_worker_kill.py``; the chaos runner repeats all three
on RabbitMQ as well.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import scenarios
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.long, pytest.mark.timeout(120)]


def test_kill_while_summarizing_resumes_the_compression(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    row = scenarios.kill_summarizing(tmp_path, private_redis.url())
    assert row.problems == []
    assert (row.sent, row.completed, row.lost, row.duplicated) == (1, 1, 0, 0)
    assert row.requests == 3, "hung summary, summary again after redelivery, then the reply"


def test_kill_while_ingesting_appends_each_turn_once(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    row = scenarios.kill_ingesting(tmp_path, private_redis.url(), sessions=8)
    assert row.problems == []
    assert (row.completed, row.lost, row.duplicated) == (8, 0, 0)
    # The killed worker only ingests: each turn is begun, and reaches the provider, once.
    assert row.requests == row.generations == 8
