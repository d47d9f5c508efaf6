"""Topologies: settings pick standalone, Cluster or Sentinel, and the client works on each.

The unit tests check what each setting builds; the others run the client against a real
three-master cluster and a real Sentinel setup started on loopback (``tests.topologies``).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster
import redis.sentinel

from tests.chaos.support import stack
from tests.conftest import TEST_REDIS_URL
from tests.stack import BIG_MODEL
from tests.topologies import ClusterTopology, SentinelTopology
from tokenwindow.client import TokenManagementClient
from tokenwindow.constants import (
    QUEUES,
    RECOVERY_KEY,
    SESSIONS_INDEX_KEY,
    events_stream_key,
    session_key,
    transcript_key,
)
from tokenwindow.errors import ConfigurationError
from tokenwindow.events import EventType
from tokenwindow.metrics import MetricsRecorder
from tokenwindow.sessions import Entry
from tokenwindow.settings import Settings, load_settings
from tokenwindow.topology import (
    QUORUM,
    celery_broker,
    celery_queues,
    celery_result_backend,
    sync_redis,
)
from workers.ledger import Ledger, Limits
from workers.recovery import RecoverySweep

TOPOLOGY_VARIABLES = (
    "REDIS_URL",
    "BROKER_URL",
    "TOKENWINDOW_REDIS_CLUSTER",
    "TOKENWINDOW_SENTINELS",
    "TOKENWINDOW_SENTINEL_MASTER",
    "TOKENWINDOW_SENTINEL_PASSWORD",
    "TOKENWINDOW_RESULT_BACKEND",
    "TOKENWINDOW_BROKER_QUORUM_QUEUES",
)
SENTINELS = "10.0.0.1:26379,10.0.0.2:26380"


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in TOPOLOGY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(_env_file=None)


def refused(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        settings(monkeypatch, **env)
    message = caught.value.message
    assert "\n" not in message
    return message


# --- what the settings build ----------------------------------------------------------------
def test_standalone_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch, REDIS_URL="redis://127.0.0.1:6379/3")
    assert type(sync_redis(s)) is redis.Redis
    assert celery_broker(s).url == celery_result_backend(s).url == "redis://127.0.0.1:6379/3"
    assert celery_broker(s).transport_options == {}
    assert [q.queue_arguments for q in celery_queues(s)] == [None] * len(QUEUES)


def test_sentinel_settings_build_sentinel_clients_and_a_sentinel_broker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = settings(
        monkeypatch,
        REDIS_URL="redis://:secret@ignored/2",
        TOKENWINDOW_SENTINELS=SENTINELS,
        TOKENWINDOW_SENTINEL_MASTER="prod",
    )
    assert s.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    client = sync_redis(s)  # no connection is made until the first command
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert pool.service_name == "prod"
    assert pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["password"] == "secret"
    broker = celery_broker(s)
    assert broker.url == "sentinel://:secret@10.0.0.1:26379/2;sentinel://:secret@10.0.0.2:26380/2"
    assert broker.transport_options["master_name"] == "prod"
    assert celery_result_backend(s) == broker


def test_sentinel_password_reaches_the_sentinels_only(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(
        monkeypatch,
        TOKENWINDOW_SENTINELS=SENTINELS,
        TOKENWINDOW_SENTINEL_MASTER="prod",
        TOKENWINDOW_SENTINEL_PASSWORD="watch",
    )
    assert celery_broker(s).transport_options["sentinel_kwargs"]["password"] == "watch"
    assert "password" not in sync_redis(s).connection_pool.connection_kwargs


def test_a_cluster_keeps_celery_off_it(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(
        monkeypatch,
        REDIS_URL="redis://10.0.0.5:7000/0",
        TOKENWINDOW_REDIS_CLUSTER="true",
        BROKER_URL="redis://10.0.0.9:6379/0",
    )
    assert celery_broker(s).url == celery_result_backend(s).url == "redis://10.0.0.9:6379/0"


def test_a_cluster_with_rabbitmq_needs_its_own_result_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = {"TOKENWINDOW_REDIS_CLUSTER": "true", "BROKER_URL": "amqp://mq//"}
    assert "TOKENWINDOW_RESULT_BACKEND is required" in refused(monkeypatch, **cluster)
    s = settings(monkeypatch, **cluster, TOKENWINDOW_RESULT_BACKEND="redis://10.0.0.9/1")
    assert celery_result_backend(s).url == "redis://10.0.0.9/1"


def test_quorum_queues_are_declared_with_confirms(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(
        monkeypatch, BROKER_URL="amqp://mq:5672//", TOKENWINDOW_BROKER_QUORUM_QUEUES="true"
    )
    assert celery_broker(s).transport_options == {"confirm_publish": True}
    queues = celery_queues(s)
    assert [q.name for q in queues] == list(QUEUES)
    for queue in queues:
        assert queue.queue_arguments == QUORUM
        assert queue.exchange.type == "topic"  # native delayed delivery needs it


def test_the_worker_config_follows_the_topology(monkeypatch: pytest.MonkeyPatch) -> None:
    """celeryconfig as a worker imports it, in a fresh interpreter with Sentinel set."""
    import subprocess
    import sys

    env = {
        **os.environ,
        "TOKENWINDOW_SENTINELS": SENTINELS,
        "TOKENWINDOW_SENTINEL_MASTER": "prod",
    }
    code = (
        "import json, celeryconfig as c; print(json.dumps([c.broker_url, "
        "c.broker_transport_options['master_name'], c.broker_transport_options"
        "['visibility_timeout'], c.result_backend_transport_options['master_name']]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    url, master, visibility, results_master = json.loads(out)
    assert url.startswith("sentinel://") and url.count(";") == 1
    assert (master, results_master) == ("prod", "prod")
    assert visibility > 300


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TOKENWINDOW_SENTINELS": SENTINELS}, "must be set together"),
        ({"TOKENWINDOW_SENTINEL_MASTER": "prod"}, "must be set together"),
        ({"TOKENWINDOW_SENTINELS": "10.0.0.1"}, "TOKENWINDOW_SENTINELS: expected host:port"),
        ({"TOKENWINDOW_SENTINELS": "a:b"}, "TOKENWINDOW_SENTINELS: expected host:port"),
        ({"TOKENWINDOW_REDIS_CLUSTER": "true"}, "BROKER_URL is required"),
        ({"TOKENWINDOW_REDIS_CLUSTER": "maybe"}, "TOKENWINDOW_REDIS_CLUSTER"),
        (
            {
                "TOKENWINDOW_REDIS_CLUSTER": "true",
                "BROKER_URL": "redis://b/0",
                "TOKENWINDOW_SENTINELS": SENTINELS,
                "TOKENWINDOW_SENTINEL_MASTER": "prod",
            },
            "exclude each other",
        ),
        ({"TOKENWINDOW_BROKER_QUORUM_QUEUES": "true"}, "needs BROKER_URL=amqp://"),
        ({"BROKER_URL": "sentinel://10.0.0.1:26379"}, "needs TOKENWINDOW_SENTINELS"),
    ],
)
def test_an_incomplete_topology_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    assert expected in refused(monkeypatch, **env)


# --- the client on real topologies ---------------------------------------------------------
def _store_session(store: redis.Redis, session_id: str) -> str:
    """Session state as a worker leaves it after one turn; returns the turn id."""
    turn_id = uuid.uuid4().hex
    store.hset(session_key(session_id), mapping={"model": "fake-gpt-4o", "messages": "2"})
    for message in ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}):
        store.rpush(transcript_key(session_id), Entry(message, 2, turn_id).dumps())
    store.zadd(SESSIONS_INDEX_KEY, {session_id: time.time()})
    event = {"type": EventType.TURN_COMPLETED, "session_id": session_id, "turn_id": turn_id}
    store.xadd(events_stream_key(session_id), {"event": json.dumps({**event, "seq": 1})})
    return turn_id


async def _session_operations(client: TokenManagementClient, session_id: str, turn: str) -> None:
    assert await client.get_session(f"{session_id}-none") is None
    session = await client.get_session(session_id)
    assert session is not None and session["model"] == "fake-gpt-4o"
    assert [m["content"] for m in await client.get_transcript(session_id)] == ["hi", "yo"]
    assert session_id in [s["session_id"] for s in await client.list_sessions()]
    assert await client.last_event_id(session_id) != "0"
    event = await client.wait_for_turn(session_id, turn, timeout=10)
    assert event["type"] == EventType.TURN_COMPLETED
    assert (await client.metrics())["active_sessions"] >= 1


def _client_ops_on(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    s = settings(monkeypatch, **env)
    store = sync_redis(s)
    session_id = f"topology-{uuid.uuid4().hex[:8]}"
    turn = _store_session(store, session_id)

    async def run() -> None:
        async with TokenManagementClient(settings=s) as client:
            await _session_operations(client, session_id, turn)

    asyncio.run(run())
    return store


@pytest.mark.slow
def test_session_operations_through_the_client_on_a_cluster(
    redis_cluster: ClusterTopology, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _client_ops_on(redis_cluster.env, monkeypatch)
    assert isinstance(store, redis.cluster.RedisCluster)
    assert len(store.get_primaries()) == 3


@pytest.mark.slow
def test_session_operations_through_the_client_with_sentinel(
    redis_sentinel: SentinelTopology, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _client_ops_on(redis_sentinel.env, monkeypatch)
    assert store.connection_pool.get_master_address()[1] == redis_sentinel.master.port


@pytest.mark.slow
def test_deleting_a_session_on_a_cluster(
    redis_cluster: ClusterTopology, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = settings(monkeypatch, **redis_cluster.env)
    session_id = f"topology-{uuid.uuid4().hex[:8]}"
    _store_session(sync_redis(s), session_id)

    async def run() -> None:
        async with TokenManagementClient(settings=s) as client:
            assert await client.delete_session(session_id) is True
            assert await client.get_session(session_id) is None

    asyncio.run(run())


@pytest.mark.slow
def test_a_turn_on_a_cluster(
    redis_cluster: ClusterTopology, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with stack(tmp_path, redis_cluster.url, broker_url=redis_cluster.broker.url(),
               TOKENWINDOW_REDIS_CLUSTER="true") as running:  # fmt: skip
        running.worker()

        async def run() -> tuple[dict[str, Any], dict[str, Any]]:
            async with running.client() as client:
                reply = await client.create_completion(
                    "cluster-turn", [{"role": "user", "content": "hello"}], BIG_MODEL
                )
                return reply, await client.metrics()

        reply, metrics = asyncio.run(run())
        assert reply["content"]
        # Begun by its own step there (the counter is in another slot than the session).
        assert metrics["turns_submitted"]["total"] == 1


def test_a_producer_puts_each_task_on_its_own_queue_only(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One message per send: each queue is bound by its own name, never a shared key."""
    from tokenwindow.constants import TASK_ROUTES
    from tokenwindow.producer import TaskProducer

    s = settings(monkeypatch, REDIS_URL=TEST_REDIS_URL)
    first_of_queue = {queue: name for name, queue in reversed(list(TASK_ROUTES.items()))}
    producer = TaskProducer.for_settings(s)
    try:
        for name in first_of_queue.values():
            producer.send(name, {"session_id": "s"})
    finally:
        producer.close()
    assert {q: redis_client.llen(q) for q in QUEUES} == dict.fromkeys(QUEUES, 1)


@pytest.mark.slow
def test_the_recovery_sweep_on_a_cluster(
    redis_cluster: ClusterTopology, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions live in different slots: the sweep's batched looks go one call per session."""
    store = sync_redis(settings(monkeypatch, **redis_cluster.env))
    assert isinstance(store, redis.cluster.RedisCluster)
    limits = Limits(
        ttl_seconds=600, maxlen=100, lease_seconds=1, stale_seconds=60, lease_grace_seconds=60
    )
    book = Ledger(store, limits)
    run = uuid.uuid4().hex[:8]
    lost, idle = [f"lost-{run}-{n}" for n in range(3)], [f"idle-{run}-{n}" for n in range(3)]
    for sid in lost + idle:
        message = {"role": "user", "content": "hello"}
        request = {"session_id": sid, "turn_id": "t"}
        entry = [Entry(message, 5, "t")]  # type: ignore[arg-type]
        book.ingest(sid, "t", entry, request=request, model="m", strategy="h", encoding="e")
        book.begin(sid, "t", "dead-worker")
    for sid in idle:
        reply = Entry({"role": "assistant", "content": "hi"}, 3, "t")
        book.finish(sid, "t", "dead-worker", reply, {})
    sent: list[dict[str, Any]] = []
    sweep = RecoverySweep(store, book, MetricsRecorder(store), sent.append)
    time.sleep(2.2)  # the lost turns' leases ran out a grace period ago
    assert sweep.sweep() >= len(lost)
    assert {kwargs["session_id"] for kwargs in sent} >= set(lost)
    watched = {sid: store.zscore(RECOVERY_KEY, sid) for sid in lost + idle}
    assert all(watched[sid] is not None for sid in lost), "resent turns are watched again"
    assert all(watched[sid] is None for sid in idle), "finished sessions are no longer watched"
