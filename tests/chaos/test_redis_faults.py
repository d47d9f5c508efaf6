"""Redis restarted (all data lost), frozen for 30 s, and a pub/sub subscriber that never reads.

Each runs its own ``redis-server``; the shared one is never touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import scenarios

pytestmark = [pytest.mark.slow, pytest.mark.long, pytest.mark.timeout(150)]


def test_redis_restart_loses_its_data_but_new_turns_work(tmp_path: Path) -> None:
    row = scenarios.redis_restart(tmp_path)
    assert row.problems == []
    assert (row.sent, row.completed, row.lost, row.duplicated) == (6, 6, 0, 0)


def test_turns_in_flight_and_new_complete_after_redis_is_frozen(tmp_path: Path) -> None:
    row = scenarios.redis_pause(tmp_path, seconds=30)
    assert row.problems == []
    assert (row.sent, row.completed, row.lost, row.duplicated) == (4, 4, 0, 0)


def test_a_subscriber_that_never_reads_is_dropped_and_stalls_nobody(tmp_path: Path) -> None:
    row = scenarios.slow_subscriber(tmp_path)
    assert row.problems == [], row.note
    assert (row.sent, row.completed) == (2, 2)
