"""RabbitMQ with quorum queues (publisher confirms on): kill -9 a worker mid-stream.

A private single-node RabbitMQ (``rabbitmq_node``), so the queues can be declared as quorum
queues without touching anyone else's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kombu import Connection

from tests.chaos import scenarios
from tests.redis_server import RedisServer
from tests.topologies import RabbitNode
from tokenwindow.constants import QUEUES

pytestmark = [pytest.mark.slow, pytest.mark.long, pytest.mark.timeout(240)]


def test_a_worker_kill_on_quorum_queues_loses_and_duplicates_nothing(
    tmp_path: Path, private_redis: RedisServer, rabbitmq_node: RabbitNode
) -> None:
    row = scenarios.kill_streaming(
        tmp_path,
        private_redis.url(),
        rabbitmq_node.url(),
        TOKENWINDOW_BROKER_QUORUM_QUEUES="true",
    )
    assert row.broker == "rabbitmq quorum"
    assert row.problems == []
    assert (row.sent, row.completed, row.lost, row.duplicated) == (3, 3, 0, 0)
    with Connection(rabbitmq_node.url()) as conn:
        for name in QUEUES:
            # Redeclaring with other arguments fails: the queues really are quorum queues.
            with pytest.raises(Exception, match="x-queue-type"):
                conn.channel().queue_declare(name, durable=True, auto_delete=False)
