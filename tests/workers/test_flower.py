"""Flower, started with the Procfile's own command line: a password, a URL prefix, kept history."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_REDIS_URL
from tests.forkserver import ROOT
from tests.harness import WorkerProcess
from tokenwindow.constants import TASK_COUNT_TOKENS
from tokenwindow.producer import TaskProducer
from workers.devstack import procfile_entries
from workers.embedded_redis import free_port

pytestmark = pytest.mark.slow

CREDENTIALS = "ops:s3cret-flower"
WAIT_SECONDS = 60.0


def get(url: str, credentials: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url)
    if credentials is not None:
        token = base64.b64encode(credentials.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None


def start_flower(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["bash", "-c", f"exec {procfile_entries()['flower']}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_at_last(flower: subprocess.Popen[bytes]) -> None:
    """Clean-up: SIGTERM, then SIGKILL if it has not exited in 15 s, as a process manager
    would. (The test's own restart checks what a clean exit keeps.)"""
    flower.terminate()
    try:
        flower.wait(timeout=15)
    except subprocess.TimeoutExpired:
        flower.kill()
        flower.wait()


def wait_until(url: str, found: Callable[[Any], bool]) -> Any:
    """Flower's JSON at ``url`` once ``found`` accepts it."""
    deadline = time.monotonic() + WAIT_SECONDS
    body: Any = None
    while time.monotonic() < deadline:
        try:
            status, body = get(url, CREDENTIALS)
        except OSError:
            time.sleep(0.5)
            continue
        if status == 200 and found(body):
            return body
        time.sleep(0.5)
    raise AssertionError(f"{url} answered {body!r}")


def test_flower_from_the_procfile_needs_auth_shows_the_worker_and_keeps_history(
    tmp_path: Path, redis_client: Any
) -> None:
    worker = WorkerProcess({"REDIS_URL": TEST_REDIS_URL}, log_path=tmp_path / "w.log").start()
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": TEST_REDIS_URL,
        "FLOWER_PORT": str(port),
        "FLOWER_BASIC_AUTH": CREDENTIALS,
        "FLOWER_URL_PREFIX": "ops/flower",
        "FLOWER_DATA_DIR": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    base = f"http://127.0.0.1:{port}/ops/flower/api"
    flower = start_flower(env)
    producer = TaskProducer(TEST_REDIS_URL)
    try:
        workers = wait_until(f"{base}/workers?refresh=1", lambda body: worker.node in body)
        assert workers and worker.node in workers, "Flower lists the worker"
        assert get(f"{base}/workers")[0] == 401, "no credentials, no access"
        assert get(f"{base}/workers", "admin:wrong")[0] == 401
        task_id = producer.send(TASK_COUNT_TOKENS, {"model": "gpt-4o", "text": "remember me"})
        wait_until(f"{base}/tasks", lambda body: task_id in (body or {}))
        flower.terminate()
        flower.wait(timeout=15)
        assert (tmp_path / "flower.db.dat").exists() or (tmp_path / "flower.db").exists()
        flower = start_flower(env)
        # --persistent: the task seen before the restart is still listed after it.
        wait_until(f"{base}/tasks", lambda body: task_id in (body or {}))
    finally:
        producer.close()
        try:
            stop_at_last(flower)
        finally:
            worker.stop()  # a worker left behind would take the next test's tasks
