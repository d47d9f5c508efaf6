"""Killing a worker and the CLI mid-run, then running again: every id exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.conftest import WORKER_ENV
from tests.cli.corpus import check_output, output_ids, read_output, write_jsonl
from tests.forkserver import ROOT
from tests.harness import WorkerProcess
from tokenwindow.cli import EXIT_OK

pytestmark = pytest.mark.long

TRANSCRIPTS = 240
KILL_AFTER_LINES = 10
POLL_SECONDS = 0.05


def test_killed_run_resumes_with_each_id_once(
    worker_factory: type[WorkerProcess], tmp_path: Path
) -> None:
    source, out, report = tmp_path / "chats.jsonl", tmp_path / "out.jsonl", tmp_path / "r.json"
    ids = write_jsonl(source, TRANSCRIPTS, turns=40)
    command = [sys.executable, "-m", "tokenwindow.cli", "compress", str(source), "-o", str(out)]
    command += ["--ratio", "0.25", "--concurrency", "6", "--report", str(report)]
    first = worker_factory(WORKER_ENV).start()
    cli = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.DEVNULL)
    while cli.poll() is None and len(output_ids(out)) < KILL_AFTER_LINES:
        time.sleep(POLL_SECONDS)
    first.kill()
    cli.kill()
    cli.wait()
    assert len(output_ids(out)) < TRANSCRIPTS, "the run ended before it could be interrupted"

    worker_factory(WORKER_ENV).start()
    rerun = subprocess.run(
        command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert rerun.returncode == EXIT_OK, rerun.stderr
    written = output_ids(out)
    assert sorted(written) == sorted(ids)
    check_output(read_output(out), json.loads(report.read_text()), ratio=0.25)
