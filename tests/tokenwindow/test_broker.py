"""The Redis transport: one client per channel, and no task lost between pop and record."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.asynchronous import Hub
from kombu.transport import redis as kombu_redis

from tests.conftest import TEST_REDIS_URL
from tests.redis_server import RedisServer
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


QUEUE = Queue("broker-inflight", Exchange("broker-inflight"), routing_key="broker-inflight")


def publish(connection: Connection, n: int) -> None:
    connection.Producer(serializer="json").publish(
        {"n": n}, exchange=QUEUE.exchange, routing_key=QUEUE.routing_key, declare=[QUEUE]
    )


def test_a_received_task_is_recorded_unacked_and_leaves_the_inflight_list(
    redis_client: redis.Redis,
) -> None:
    with Connection(TEST_REDIS_URL, transport=broker.TRANSPORT) as connection:
        publish(connection, 1)
        received: list[Any] = []
        with connection.Consumer(QUEUE, callbacks=[lambda body, m: received.append(m)]):
            connection.drain_events(timeout=5)
            (message,) = received
            assert redis_client.llen(broker.inflight_key(QUEUE.name)) == 0
            assert redis_client.hexists("unacked", message.delivery_tag)
            message.ack()
        assert not redis_client.hexists("unacked", message.delivery_tag)


def test_a_recorded_task_whose_worker_died_is_delivered_again_as_sent(
    redis_client: redis.Redis,
) -> None:
    """What a worker killed after the unacked record leaves: the record. Another worker's
    visibility sweep puts the task back from it, with its exchange and routing key."""
    received: list[Any] = []
    options = {"visibility_timeout": 0.2}
    with (
        Connection(TEST_REDIS_URL, transport=broker.TRANSPORT) as dead,
        Connection(TEST_REDIS_URL, transport=broker.TRANSPORT, transport_options=options) as live,
    ):
        publish(dead, 9)
        with dead.Consumer(QUEUE, callbacks=[lambda body, m: received.append(m)]):
            dead.drain_events(timeout=5)
        (taken,) = received
        time.sleep(0.3)
        live.default_channel.qos.restore_visible()
        assert redis_client.hlen("unacked") == 0
        with live.Consumer(QUEUE, callbacks=[lambda body, m: (received.append(m), m.ack())]):
            live.drain_events(timeout=5)
    again = received[1]
    assert (again.payload, again.delivery_tag) == (taken.payload, taken.delivery_tag)
    assert again.headers == {**taken.headers, "redelivered": True}
    assert again.delivery_info["routing_key"] == QUEUE.routing_key


def test_a_task_whose_worker_died_before_recording_it_is_delivered_again(
    redis_client: redis.Redis,
) -> None:
    """What a worker killed between BLMOVE and the unacked record leaves: the task on the
    in-flight list only. A restore sweep a grace period later puts it back on its queue."""
    inflight = broker.inflight_key(QUEUE.name)
    received: list[Any] = []
    with Connection(TEST_REDIS_URL, transport=broker.TRANSPORT) as connection:
        publish(connection, 7)
        redis_client.lmove(QUEUE.name, inflight, "RIGHT", "LEFT")  # the dead worker's move
        callbacks = [lambda body, m: (received.append(body), m.ack())]
        with connection.Consumer(QUEUE, callbacks=callbacks):
            channel = connection.default_channel
            channel.restore_inflight(grace=0.2)  # first sighting: too early to tell
            assert (redis_client.llen(inflight), redis_client.llen(QUEUE.name)) == (1, 0)
            time.sleep(0.3)
            channel.restore_inflight(grace=0.2)
            assert (redis_client.llen(inflight), redis_client.llen(QUEUE.name)) == (0, 1)
            connection.drain_events(timeout=5)
    assert received == [{"n": 7}]
    assert redis_client.hlen(f"{inflight}.seen") == 0


def test_a_no_ack_consumer_leaves_nothing_in_flight(redis_client: redis.Redis) -> None:
    """Control replies (``app.control.ping``) are consumed without acks: nothing to record."""
    received: list[Any] = []
    with Connection(TEST_REDIS_URL, transport=broker.TRANSPORT) as connection:
        publish(connection, 3)
        with connection.Consumer(
            QUEUE, callbacks=[lambda body, m: received.append(body)], no_ack=True
        ):
            connection.drain_events(timeout=5)
    assert received == [{"n": 3}]
    assert redis_client.llen(broker.inflight_key(QUEUE.name)) == 0
    assert redis_client.hlen("unacked") == 0


def test_a_server_without_blmove_falls_back_to_brpop() -> None:
    """Redis before 6.2 has no BLMOVE: the channel says so once and consumes as kombu does."""
    received: list[Any] = []
    callbacks = [lambda body, m: (received.append(body), m.ack())]
    with (
        RedisServer("--rename-command", "BLMOVE", "") as server,
        Connection(server.url(), transport=broker.TRANSPORT) as connection,
    ):
        publish(connection, 5)
        with connection.Consumer(QUEUE, callbacks=callbacks):
            for _ in range(3):  # the refused BLMOVE, then BRPOP
                with contextlib.suppress(TimeoutError):
                    connection.drain_events(timeout=1)
                if received:
                    break
    assert received == [{"n": 5}]


@contextlib.contextmanager
def worker_loop(
    monkeypatch: pytest.MonkeyPatch, ack_delay: float
) -> Iterator[tuple[Connection, Hub, list[Any]]]:
    """Consume ``QUEUE`` as a Celery worker does: on a kombu hub, acking on its thread."""
    monkeypatch.setattr(broker, "ACK_DELAY_SECONDS", ack_delay)
    hub, received = Hub(), list[Any]()
    with Connection(TEST_REDIS_URL, transport=broker.TRANSPORT) as connection:
        connection.transport.register_with_event_loop(connection.connection, hub)
        with connection.Consumer(QUEUE, callbacks=[lambda body, m: received.append(m)]):
            yield connection, hub, received
    hub.close()


def run_until(hub: Hub, done: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the hub did not get there in time"
        hub.run_once()


def ack_on_the_hub(hub: Hub, connection: Connection, received: list[Any], n: int) -> Any:
    """Publish task ``n``, take it in and ack it on the hub's thread, as Celery does."""
    publish(connection, n)
    run_until(hub, lambda: any(m.payload == {"n": n} for m in received))
    message = received[-1]
    hub.call_soon(message.ack)
    run_until(hub, lambda: message.acknowledged)
    return message


def test_in_a_worker_loop_an_ack_rides_with_the_next_tasks_record(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    with worker_loop(monkeypatch, 60.0) as (connection, hub, received):
        first = ack_on_the_hub(hub, connection, received, 1)
        assert redis_client.hexists("unacked", first.delivery_tag)  # waiting for a ride
        publish(connection, 2)
        run_until(hub, lambda: len(received) == 2)
        assert not redis_client.hexists("unacked", first.delivery_tag)
        assert redis_client.hexists("unacked", received[1].delivery_tag)
        received[1].ack()


def test_in_a_worker_loop_a_waiting_ack_goes_out_on_its_own_when_no_task_comes(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    with worker_loop(monkeypatch, 0.05) as (connection, hub, received):
        message = ack_on_the_hub(hub, connection, received, 3)
        run_until(hub, lambda: not redis_client.hexists("unacked", message.delivery_tag))
    assert redis_client.zscore("unacked_index", message.delivery_tag) is None


def test_closing_the_channel_sends_the_waiting_acks(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker shutting down leaves no finished task to be delivered again."""
    with worker_loop(monkeypatch, 60.0) as (connection, hub, received):
        message = ack_on_the_hub(hub, connection, received, 4)
        assert redis_client.hexists("unacked", message.delivery_tag)
    assert not redis_client.hexists("unacked", message.delivery_tag)
    assert redis_client.llen(QUEUE.name) == 0  # not put back on the queue either
