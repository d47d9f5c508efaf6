"""A small load run: every turn completes once. The full 1,000 x 5 run is ``make chaos``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import scenarios
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_many_sessions_complete_every_turn_once(tmp_path: Path, private_redis: RedisServer) -> None:
    row = scenarios.load(tmp_path, private_redis.url(), sessions=40, turns=3, parallel=20)
    assert row.problems == []
    assert (row.sent, row.completed, row.lost, row.duplicated) == (120, 120, 0, 0)
    assert row.requests == 120
