"""The fork server starts programs as a fresh ``python -m`` would, or starts them fresh."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tests import forkserver

REPORT = (
    "import os, sys; print(os.environ.get('TOKENWINDOW_PROBE'), os.getcwd(), "
    "os.getpgid(0) == os.getpid(), sys.argv[0], 'litellm' in sys.modules)"
)


def run(code: str, tmp_path: Path, **env: str) -> tuple[forkserver.ChildProcess, str]:
    """``python -m timeit`` runs ``code`` once: a stdlib program that prints what it sees."""
    log = tmp_path / "child.log"
    child = forkserver.start(
        "timeit", ["-n1", "-r1", code], env={**os.environ, **env}, log=log, cwd=tmp_path
    )
    child.wait(timeout=30)
    return child, log.read_text()


def test_a_forked_program_gets_its_environment_folder_and_group(tmp_path: Path) -> None:
    child, output = run(REPORT, tmp_path, TOKENWINDOW_PROBE="42")

    assert isinstance(child, forkserver.ForkedProcess)
    assert child.returncode == 0
    probe, cwd, own_group, argv0, preloaded = output.split()[:5]
    assert (probe, cwd, own_group, preloaded) == ("42", str(tmp_path), "True", "True")
    assert argv0.endswith("timeit.py")


def test_a_failing_program_reports_its_exit_code(tmp_path: Path) -> None:
    log = tmp_path / "json.log"
    child = forkserver.start("json.tool", ["missing.json"], env=dict(os.environ), log=log)

    assert child.wait(timeout=30) == 2  # argparse's SystemExit, as from a fresh interpreter
    assert "missing.json" in log.read_text()


def test_a_killed_program_reports_the_signal(tmp_path: Path) -> None:
    log = tmp_path / "sleeper.log"
    child = forkserver.start(
        "timeit", ["-n1", "-r1", "import time; time.sleep(60)"], env=dict(os.environ), log=log
    )
    assert child.poll() is None
    os.killpg(child.pid, signal.SIGKILL)  # its whole group, as the harness kills a worker

    assert child.wait(timeout=10) == -signal.SIGKILL
    assert child.poll() == -signal.SIGKILL


def test_a_variable_read_at_import_gets_a_fresh_interpreter(tmp_path: Path) -> None:
    """litellm builds its HTTP clients on import: a proxy set for one program only must reach
    a process that imports after it is set."""
    child, output = run(REPORT, tmp_path, HTTPS_PROXY="http://127.0.0.1:9")

    assert isinstance(child, subprocess.Popen)
    assert child.returncode == 0
    assert output.split()[4] == "False"
