"""The dev stack starts what the Procfile says, so local runs match production."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from workers.devstack import (
    LOCAL_PROCESS_TYPES,
    PROCFILE,
    node_names,
    procfile_entries,
    with_interpreter_bin,
)


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
