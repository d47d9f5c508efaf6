"""Real Redis topologies on loopback for tests: a three-master Redis Cluster and Sentinel.

Every server is a private ``redis-server`` on a free port (the shared Redis is never touched).
``env`` of each topology is what a worker, the gateway or the client needs in its environment to
use it, so a test can run the whole pipeline against either:

    def test_x(redis_cluster: ClusterTopology, tmp_path: Path) -> None:
        with stack(tmp_path, **redis_cluster.env) ...

The fixtures ``redis_cluster``, ``redis_sentinel`` and ``rabbitmq_node`` (a private RabbitMQ,
for quorum queues) are registered for every test (see
``tests/conftest.py``); ``start_cluster`` and ``start_sentinel`` serve scripts and benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.redis_server import RedisServer
from workers.embedded_redis import free_port

DOWN_AFTER_MS = 1_000
"""How long the sentinels wait for a silent master before they agree it is down."""
READY_SECONDS = 30.0


def _wait(condition: Callable[[], bool], what: str, timeout: float = READY_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} within {timeout} s")


class ClusterNode(RedisServer):
    """A cluster-enabled ``redis-server`` with its bus on a second free port."""

    def __init__(self, workdir: Path) -> None:
        port, bus = free_port(), free_port()
        config = str(workdir / f"nodes-{port}.conf")
        super().__init__(
            "--cluster-enabled", "yes", "--cluster-config-file", config,
            "--cluster-port", str(bus), "--cluster-node-timeout", "2000",
            port=port,
        )  # fmt: skip


class SentinelServer(RedisServer):
    """``redis-server --sentinel`` watching one master (sentinels rewrite their config file)."""

    def __init__(self, workdir: Path, master: str, master_port: int, quorum: int) -> None:
        super().__init__()
        self.config = workdir / f"sentinel-{self.port}.conf"
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\n"
            f"sentinel monitor {master} 127.0.0.1 {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {master} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {master} 10000\n"
            f"sentinel parallel-syncs {master} 1\n",
            encoding="utf-8",
        )

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        assert binary, "Sentinel tests need redis-server on PATH"
        return [binary, str(self.config), "--sentinel"]


class RabbitNode:
    """A private single-node RabbitMQ on a free loopback port (quorum queues work on one node).

    Its own node name, data directory and ports: the machine's RabbitMQ is never touched.
    """

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.name = f"tw{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> Path | None:
        """The real start script (the one on PATH is a wrapper that switches user)."""
        found = shutil.which("rabbitmq-server")
        return Path(found).resolve().parent / "rabbitmq-server" if found else None

    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self) -> RabbitNode:
        binary = self.binary()
        assert binary is not None, "RabbitMQ tests need rabbitmq-server"
        (self.workdir / "plugins").write_text("", encoding="utf-8")
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "plugins"),
            "RABBITMQ_PID_FILE": str(self.workdir / "pid"),
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "none"),
        }
        log = (self.workdir / "rabbitmq.log").open("ab")
        self.process = subprocess.Popen(
            [str(binary)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

        def accepts() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True

        _wait(accepts, f"RabbitMQ node {self.name} did not listen", timeout=90)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@dataclass
class ClusterTopology:
    """Three masters (no replicas) plus a plain Redis for Celery's broker and results."""

    nodes: list[ClusterNode]
    broker: RedisServer

    @property
    def servers(self) -> list[RedisServer]:
        return [*self.nodes, self.broker]

    @property
    def url(self) -> str:
        """Any node will do: the client discovers the others."""
        return self.nodes[0].url()

    @property
    def env(self) -> dict[str, str]:
        return {
            "REDIS_URL": self.url,
            "TOKENWINDOW_REDIS_CLUSTER": "true",
            "BROKER_URL": self.broker.url(),
        }


@dataclass
class SentinelTopology:
    """One master, one replica, three sentinels (quorum 2)."""

    master: RedisServer
    replica: RedisServer
    sentinels: list[SentinelServer]
    name: str
    """The master's name, unique per topology: sentinels of two topologies never mix."""

    @property
    def servers(self) -> list[RedisServer]:
        """In start order; stop them in reverse, sentinels first, so none reconfigures the rest."""
        return [self.master, self.replica, *self.sentinels]

    @property
    def env(self) -> dict[str, str]:
        """State and broker both on the master the sentinels name (host in REDIS_URL unused)."""
        return {
            "REDIS_URL": "redis://sentinel-master/0",
            "TOKENWINDOW_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels),
            "TOKENWINDOW_SENTINEL_MASTER": self.name,
        }

    def master_port(self) -> int:
        """The master's port as the first sentinel that answers sees it."""
        for sentinel in self.sentinels:
            try:
                with redis.Redis(port=sentinel.port, socket_timeout=0.5) as client:
                    _, port = client.sentinel_get_master_addr_by_name(self.name)
                    return int(port)
            except (redis.RedisError, OSError, TypeError):
                continue
        raise RuntimeError("no sentinel answered")


def start_cluster(workdir: Path) -> ClusterTopology:
    nodes = [ClusterNode(workdir) for _ in range(3)]
    topology = ClusterTopology(nodes, RedisServer())
    with _stopped_on_failure(topology.servers):
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        create = ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0"]
        created = subprocess.run(
            [*create, "--cluster-yes"],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if created.returncode != 0:
            output = created.stdout + created.stderr
            raise RuntimeError(f"redis-cli --cluster create failed:\n{output}")

        def ready() -> bool:
            for node in nodes:
                with redis.Redis(port=node.port) as client:
                    if client.cluster("info").get("cluster_state") != "ok":
                        return False
            return True

        _wait(ready, "the cluster did not reach cluster_state:ok")
    return topology


@contextlib.contextmanager
def _stopped_on_failure(servers: list[RedisServer]) -> Iterator[None]:
    """Start ``servers``; if they or the block fail, kill every one (none is left running)."""
    try:
        for server in servers:
            server.start()
        yield
    except BaseException:
        for server in servers:
            server.kill()
        raise


def start_sentinel(workdir: Path) -> SentinelTopology:
    name = f"tw-{uuid.uuid4().hex[:8]}"
    master = RedisServer(replicable=True)
    replica = RedisServer("--replicaof", "127.0.0.1", str(master.port), replicable=True)
    sentinels = [SentinelServer(workdir, name, master.port, quorum=2) for _ in range(3)]
    topology = SentinelTopology(master, replica, sentinels, name)

    def ready() -> bool:
        with redis.Redis(port=master.port) as client:
            if int(client.info("replication")["connected_slaves"]) < 1:
                return False
        for sentinel in sentinels:
            with redis.Redis(port=sentinel.port) as client:
                state = client.sentinel_master(name)
                # Each sentinel must know the replica and the two other sentinels.
                if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                    return False
        return True

    with _stopped_on_failure(topology.servers):
        _wait(ready, "the sentinels did not discover the replica and each other")
    return topology


@pytest.fixture
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    topology = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield topology
    finally:
        for server in topology.servers:
            server.kill()


@pytest.fixture
def rabbitmq_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    if RabbitNode.binary() is None:
        pytest.skip("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    node = RabbitNode(tmp_path_factory.mktemp("rabbitmq")).start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    topology = start_sentinel(tmp_path_factory.mktemp("sentinel"))
    try:
        yield topology
    finally:
        for server in reversed(topology.servers):
            server.kill()
