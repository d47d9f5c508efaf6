"""The Redis transport keeps one client per channel and is otherwise kombu's, on a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from tests.conftest import TEST_REDIS_URL
from tokenwindow import broker
from tokenwindow.producer import TaskProducer


def sync_clients_built(transport: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Publish and consume three messages; count the command clients the channel built."""
    built: list[Any] = []
    build = kombu_redis.Channel._create_client

    def counting(self: kombu_redis.Channel, asynchronous: bool = False) -> Any:
        if not asynchronous:
            built.append(self)
        return build(self, asynchronous)

    monkeypatch.setattr(kombu_redis.Channel, "_create_client", counting)
    queue = Queue("broker-test", Exchange("broker-test"), routing_key="broker-test")
    received: list[Any] = []
    with Connection(TEST_REDIS_URL, transport=transport) as connection:
        producer = connection.Producer(serializer="json")
        for n in range(3):
            producer.publish(
                {"n": n}, exchange=queue.exchange, routing_key="broker-test", declare=[queue]
            )
        with connection.Consumer(
            queue, callbacks=[lambda body, m: (received.append(body), m.ack())]
        ):
            while len(received) < 3:
                connection.drain_events(timeout=5)
    assert [body["n"] for body in received] == [0, 1, 2]
    monkeypatch.undo()
    return len(built)


def test_a_channel_reuses_one_client_for_every_command(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sync_clients_built("kombu.transport.redis:Transport", monkeypatch) >= 6
    assert sync_clients_built(broker.TRANSPORT, monkeypatch) == 1


def test_only_redis_urls_take_it() -> None:
    assert broker.transport_for("redis://h:6379/0") == broker.TRANSPORT
    assert broker.transport_for("rediss://h:6380/0") == broker.TRANSPORT
    assert broker.transport_for("sentinel://h:26379") is None
    assert broker.transport_for("amqp://guest@h//") is None


def test_a_producer_uses_it_and_the_service_logs_the_urls_own_scheme() -> None:
    producer = TaskProducer("redis://:hunter2@127.0.0.1:6379/15")
    with producer.app.connection_for_write() as connection:
        assert isinstance(connection.default_channel, broker.Channel)
    import celeryconfig  # noqa: F401  (the service takes the transport for every Redis URL)

    with Connection("redis://:hunter2@127.0.0.1:6379/15") as connection:
        assert connection.as_uri() == "redis://:**@127.0.0.1:6379/15"
        assert isinstance(connection.default_channel, broker.Channel)
