"""Flower, started with the Procfile's own command line, requires a password and sees workers."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_REDIS_URL
from tests.harness import ROOT, WorkerProcess
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


def test_flower_from_the_procfile_needs_auth_and_shows_the_worker(
    tmp_path: Path, redis_client: Any
) -> None:
    worker = WorkerProcess({"REDIS_URL": TEST_REDIS_URL}, log_path=tmp_path / "w.log").start()
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": TEST_REDIS_URL,
        "FLOWER_PORT": str(port),
        "FLOWER_BASIC_AUTH": CREDENTIALS,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    flower = subprocess.Popen(
        ["bash", "-c", f"exec {procfile_entries()['flower']}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api/workers?refresh=1"
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        workers: Any = None
        while time.monotonic() < deadline:
            try:
                status, workers = get(url, CREDENTIALS)
            except OSError:
                time.sleep(0.5)
                continue
            if status == 200 and workers and worker.node in workers:
                break
            time.sleep(0.5)
        assert workers and worker.node in workers, "Flower lists the worker"
        assert get(url)[0] == 401, "no credentials, no access"
        assert get(url, "admin:wrong")[0] == 401
    finally:
        flower.terminate()
        flower.wait(timeout=15)
        worker.stop()
