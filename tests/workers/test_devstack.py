"""The dev stack starts what the Procfile says, so local runs match production."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_REDIS_URL
from tokenwindow.errors import ConfigurationError
from tokenwindow.settings import load_settings
from workers.devstack import (
    LOCAL_PROCESS_TYPES,
    PROCFILE,
    node_names,
    procfile_entries,
    resolve_redis,
    with_interpreter_bin,
)
from workers.embedded_redis import free_port, redis_answers


def test_procfile_has_workers_flower_and_web() -> None:
    entries = procfile_entries(PROCFILE)
    workers = [name for name in entries if name.startswith("worker")]
    assert workers
    assert {"flower", "web"} <= set(entries)
    for name in workers:
        assert entries[name].startswith("celery -A workers.app worker")
        assert " -Q " in entries[name]
    assert "--basic-auth" in entries["flower"]


def test_local_stack_runs_workers_and_flower_but_not_the_gateway() -> None:
    assert LOCAL_PROCESS_TYPES.match("worker_fast")
    assert LOCAL_PROCESS_TYPES.match("flower")
    assert not LOCAL_PROCESS_TYPES.match("web")


def test_parsing_skips_comments_and_fills_in_the_host(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        "# comment: not a process\n"
        "worker_a: celery -A workers.app worker -Q fast -n a@%h\n"
        "\n"
        "flower: celery -A workers.app flower --port=5555\n",
        encoding="utf-8",
    )
    entries = procfile_entries(procfile)
    assert list(entries) == ["worker_a", "flower"]
    assert node_names(entries) == [f"a@{socket.gethostname()}"]


def test_children_find_the_interpreters_celery() -> None:
    path = with_interpreter_bin("/usr/bin")
    assert path.split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert (Path(path.split(os.pathsep)[0]) / "celery").exists()


def test_an_unset_redis_url_that_does_not_answer_starts_an_embedded_server() -> None:
    settings = load_settings(_env_file=None, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    settings.redis_url_explicit = False
    url, embedded = resolve_redis(settings)
    try:
        assert embedded is not None
        assert url != settings.redis_url and redis_answers(url)
    finally:
        if embedded is not None:
            embedded.stop()


def test_an_explicit_redis_url_that_does_not_answer_is_an_error() -> None:
    settings = load_settings(_env_file=None, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ConfigurationError, match=r"REDIS_URL=.* does not answer"):
        resolve_redis(settings)


@pytest.mark.slow
def test_the_main_job_runs_the_demo_end_to_end() -> None:
    """What ``make run`` runs: Procfile workers and Flower, then the demo, then a clean stop."""
    env = {**os.environ, "REDIS_URL": TEST_REDIS_URL, "FLOWER_PORT": str(free_port())}
    result = subprocess.run(
        [sys.executable, "-m", "workers.devstack"],
        check=False,
        cwd=PROCFILE.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert f"Using Redis at {TEST_REDIS_URL}" in out
    assert "OFFLINE model" in out, "no key: the offline model, clearly labelled"
    assert "[compression]" in out, "the demo's conversation outgrows the window"
    assert "failed turns: 0" in out
