"""The dev stack starts what the Procfile says, so local runs match production."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_REDIS_URL
from tokenwindow.errors import UnreachableError
from tokenwindow.settings import load_settings
from workers.devstack import (
    LOCAL_PROCESS_TYPES,
    PROCFILE,
    ROOT,
    flower_environment,
    node_names,
    procfile_entries,
    resolve_redis,
    start,
    with_interpreter_bin,
)
from workers.embedded_redis import free_port, redis_answers

pytestmark = pytest.mark.long


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
    with pytest.raises(UnreachableError, match=r"does not answer at redis://.*REDIS_URL"):
        resolve_redis(settings)


def devstack_error(**env: str) -> str:
    """The dev stack's stderr when it must stop: one line, exit 3, no password."""
    result = subprocess.run(
        [sys.executable, "-m", "workers.devstack", "--no-demo"],
        check=False,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    return result.stderr


def test_a_stopped_redis_is_one_line_with_the_password_hidden() -> None:
    err = devstack_error(REDIS_URL=f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    assert "redis://:***@127.0.0.1" in err and "REDIS_URL" in err


def test_a_stopped_broker_is_one_line_before_anything_starts() -> None:
    broker = f"amqp://guest:hunter2@127.0.0.1:{free_port()}//"
    err = devstack_error(REDIS_URL=TEST_REDIS_URL, BROKER_URL=broker)
    assert "the broker does not answer at amqp://guest:***@127.0.0.1" in err
    assert "set BROKER_URL" in err


def test_flower_gets_a_generated_password_and_a_kept_data_dir(tmp_path: Path) -> None:
    unset = load_settings(_env_file=None)
    unset.flower_basic_auth = None
    unset.flower_data_dir = None
    first, second = flower_environment(unset, tmp_path), flower_environment(unset, tmp_path)
    user, _, password = first["FLOWER_BASIC_AUTH"].partition(":")
    assert user == "admin" and len(password) >= 16
    assert second["FLOWER_BASIC_AUTH"] != first["FLOWER_BASIC_AUTH"]
    assert first["FLOWER_DATA_DIR"] == second["FLOWER_DATA_DIR"] == str(tmp_path / "flower")
    assert (tmp_path / "flower").is_dir()
    chosen = load_settings(
        _env_file=None, flower_basic_auth="ops:mine", flower_data_dir=tmp_path / "data"
    )
    assert flower_environment(chosen, tmp_path) == {}, "what the operator set is kept"


def test_no_built_in_flower_password_anywhere() -> None:
    for path in ("Procfile", "README.md", "workers/devstack.py", "tokenwindow/settings.py"):
        assert "admin:tokenwindow" not in (ROOT / path).read_text(encoding="utf-8"), path


def test_the_procfiles_flower_refuses_to_start_without_a_password() -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    result = subprocess.run(
        ["bash", "-c", f"exec {procfile_entries()['flower']}"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "set FLOWER_BASIC_AUTH to user:password" in result.stderr


def test_process_output_goes_to_its_log_file(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    assert start("sh -c 'echo started; echo oops >&2'", log).wait(timeout=10) == 0
    assert log.read_text(encoding="utf-8") == "started\noops\n"


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
    assert "    :: compressed: hybrid" in out, "the demo's conversation outgrows the window"
    assert "turn  seconds  reply chars  window after  compression" in out
    assert "failed turns: 0" in out
    assert "Flower: http://127.0.0.1:" in out and "(user admin, password " in out
    # The terminal holds the conversation only; the workers' lines are in the run folder.
    for worker_line in ("task started", "celery@", "ts=", "[tasks]", "Connected to redis"):
        assert worker_line not in out + result.stderr, worker_line
    folder = out.split("Worker and Flower logs of this run: ", 1)[1].split("\n", 1)[0]
    logs = {path.name: path.read_text(encoding="utf-8") for path in (ROOT / folder).iterdir()}
    assert set(logs) == {"worker_fast.log", "worker_llm.log", "worker_summarize.log", "flower.log"}
    assert "task started" in logs["worker_llm.log"]
