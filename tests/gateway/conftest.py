"""The gateway as the Procfile runs it (``uvicorn gateway.app:app``), in front of a pipeline."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests import forkserver
from tests.conftest import TEST_REDIS_URL
from tests.forkserver import ChildProcess
from tests.pipeline import Pipeline, pipeline
from tests.stack import BIG_MODEL
from workers.embedded_redis import free_port

__all__ = ["GatewayProcess", "free_port", "gateway", "pipeline", "workerless"]

READY_TIMEOUT_SECONDS = 30.0


@dataclass
class GatewayProcess:
    """``python -m uvicorn gateway.app:app`` on a free local port."""

    env: dict[str, str]
    log_path: Path
    process: ChildProcess | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def start(self) -> GatewayProcess:
        self.port = free_port()
        args = ["gateway.app:app", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--log-config", "gateway/logging.json"]
        env = {**os.environ, **self.env}
        self.process = forkserver.start("uvicorn", args, env=env, log=self.log_path)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log}")
            try:
                httpx.get(f"{self.url}/openapi.json", timeout=1.0)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise TimeoutError(f"gateway did not answer in {READY_TIMEOUT_SECONDS} s:\n{self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="module")
def gateway(
    pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """An open gateway over the module's pipeline; requests without a model use BIG_MODEL."""
    env = {
        **pipeline.env,
        "TOKENWINDOW_DEFAULT_MODEL": BIG_MODEL,
        "TOKENWINDOW_GATEWAY_ALLOW_OPEN": "true",
    }
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    process = GatewayProcess(env, log).start()
    try:
        yield process
    finally:
        process.stop()


@contextmanager
def workerless(env: dict[str, str], log_path: Path) -> Iterator[GatewayProcess]:
    """A gateway on the test database, emptied before and after, with no worker behind it:
    turns stay queued, so a test decides what (if anything) their events say."""
    with redis.Redis.from_url(TEST_REDIS_URL) as store:
        store.flushdb()
    process = GatewayProcess({"REDIS_URL": TEST_REDIS_URL, **env}, log_path).start()
    try:
        yield process
    finally:
        process.stop()
        with redis.Redis.from_url(TEST_REDIS_URL) as store:
            store.flushdb()
