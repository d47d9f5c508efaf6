"""Real Celery workers for tests: ``celery -A workers.app worker`` as the Procfile runs it.

``WorkerProcess`` starts one with a given environment (forked from ``tests.forkserver``, which
has done the imports), waits for its first answered ping, and can be killed with SIGKILL (its
whole process group, as a crash would) and started again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from tests import forkserver
from tests.forkserver import ChildProcess
from tokenwindow.constants import QUEUES
from tokenwindow.errors import ConfigurationError
from tokenwindow.settings import load_settings
from tokenwindow.topology import CeleryEndpoint, celery_broker

READY_TIMEOUT_SECONDS = 60.0


def ping(broker_url: str, node: str, timeout: float = 0.5, **transport: Any) -> bool:
    app = Celery(broker=broker_url, set_as_current=False)
    app.conf.broker_transport_options = transport
    try:
        replies = app.control.ping(destination=[node], timeout=timeout)
    finally:
        app.close()
    return any(node in reply for reply in replies)


class WorkerProcess:
    """One ``celery worker`` subprocess (a main process and its pool children)."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        queues: tuple[str, ...] = QUEUES,
        concurrency: int = 2,
        log_path: Path | None = None,
        app: str = "workers.app",
        pool: str = "prefork",
    ) -> None:
        self.env = {**os.environ, **env}
        self.app = app
        self.queues = queues
        self.concurrency = concurrency
        self.pool = pool
        self.node = f"test-{uuid.uuid4().hex[:8]}@localhost"
        self.log_path = log_path
        self.process: ChildProcess | None = None

    @property
    def broker_url(self) -> str:
        return self.broker.url

    @property
    def broker(self) -> CeleryEndpoint:
        """The broker as the worker sees it from its environment (Sentinel included)."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "environ", self.env)
            try:
                return celery_broker(load_settings(_env_file=None))
            except ConfigurationError:  # the worker will refuse to start: say why there
                return CeleryEndpoint(self.env.get("BROKER_URL") or self.env["REDIS_URL"])

    def start(self, *, wait: bool = True) -> WorkerProcess:
        args = ["-A", self.app, "worker", "-Q", ",".join(self.queues), "-P", self.pool]
        args += ["-c", str(self.concurrency), "-n", self.node]
        args += ["--without-gossip", "--without-mingle", "-l", "INFO"]
        self.process = forkserver.start("celery", args, env=self.env, log=self.log_path)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}; see log")
            broker = self.broker
            if ping(broker.url, self.node, **broker.transport_options):
                return
        raise TimeoutError(f"worker {self.node} did not answer a ping in {timeout} s")

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown: SIGTERM to the main process lets running tasks finish."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def worker_factory(tmp_path: Path) -> Iterator[type[WorkerProcess]]:
    """Start workers with ``worker_factory(env).start()``; all are stopped after the test."""
    started: list[WorkerProcess] = []

    class Tracked(WorkerProcess):
        def start(self, *, wait: bool = True) -> WorkerProcess:
            if self.log_path is None:
                self.log_path = tmp_path / f"{self.node.split('@')[0]}.log"
            started.append(self)
            return super().start(wait=wait)

    yield Tracked
    for worker in started:
        worker.stop()
