"""The LLM worker (threads pool) killed with many streams in flight: every turn completes, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import scenarios
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.long, pytest.mark.timeout(240)]


def test_a_kill_with_streams_in_flight_loses_and_duplicates_nothing(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    row = scenarios.kill_under_load(tmp_path, private_redis.url(), streams=60)
    assert row.problems == []
    assert (row.sent, row.completed, row.lost, row.duplicated) == (60, 60, 0, 0)
