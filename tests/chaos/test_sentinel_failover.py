"""Sentinel: kill -9 the master halfway through 20 turns across 5 sessions (one run, two tests).

Every turn the client saw complete is in the promoted replica's transcript, and new sessions'
turns complete. Turns in flight at the kill finish once: replication is asynchronous, so the
promoted replica may lack a turn's task message; the workers' recovery sweep sends it again.
"""

from __future__ import annotations

import pytest

from tests.chaos import scenarios

pytestmark = [pytest.mark.slow, pytest.mark.long, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def failover(tmp_path_factory: pytest.TempPathFactory) -> scenarios.FailoverRow:
    row = scenarios.sentinel_failover(
        tmp_path_factory.mktemp("failover"), sessions=5, turns=4, timeout=30
    )
    print(f"\n{row.fault}: {row.note}; recovery {row.recovery_s:.1f} s; {row.problems}")
    return row


def test_no_acknowledged_turn_is_lost_and_new_turns_work(
    failover: scenarios.FailoverRow,
) -> None:
    assert failover.sent == 25
    assert failover.acknowledged_missing == 0
    assert (failover.new_completed, failover.new_sent) == (5, 5)


def test_turns_in_flight_at_the_kill_finish_once(failover: scenarios.FailoverRow) -> None:
    assert (failover.stranded, failover.duplicated) == (0, 0), failover.problems
