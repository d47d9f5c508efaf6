"""A threads-pool LLM worker runs its stream loop above everything else in the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_REDIS_URL
from tests.forkserver import ROOT
from tests.harness import WorkerProcess
from tokenwindow.constants import QUEUE_COMPLETIONS
from workers.engine import LOOP_THREAD_NAME

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="nice values per thread: Linux")

START_ENGINE_THEN_A_THREAD = """
import json, os, threading
from workers.engine import serve_streams_first

engine = serve_streams_first(7)
release = threading.Event()
later = threading.Thread(target=release.wait)
later.start()
nice = lambda tid: os.getpriority(os.PRIO_PROCESS, tid)
print(json.dumps({
    "loop": nice(engine._thread.native_id),
    "caller": nice(threading.get_native_id()),
    "started_later": nice(later.native_id),
}))
release.set()
later.join()
"""


def thread_nice_values(pid: int) -> dict[int, int]:
    """``{thread id: nice value}`` of every thread of ``pid`` (field 19 of each ``stat``)."""
    values = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        values[int(task.name)] = int(fields[16])
    return values


def test_the_loop_keeps_the_process_priority_and_later_threads_run_lower() -> None:
    done = subprocess.run(
        [sys.executable, "-c", START_ENGINE_THEN_A_THREAD],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": TEST_REDIS_URL},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert json.loads(done.stdout) == {"loop": base, "caller": base + 7, "started_later": base + 7}


def thread_names(pid: int) -> dict[int, str]:
    """``{thread id: the kernel's name for it}`` of every thread of ``pid``."""
    return {
        int(task.name): (task / "comm").read_text().strip()
        for task in Path(f"/proc/{pid}/task").iterdir()
    }


@pytest.mark.parametrize(("pool", "lowered"), [("threads", True), ("prefork", False)])
def test_a_threads_worker_serving_turns_runs_its_consumer_lower(
    pool: str, lowered: bool, tmp_path: Path
) -> None:
    """Celery's consumer is the main thread; a prefork worker's streams run in its children,
    each with its own loop, so it changes nothing there."""
    env = {"REDIS_URL": TEST_REDIS_URL, "TOKENWINDOW_INTAKE_NICE": "5"}
    worker = WorkerProcess(
        env, queues=(QUEUE_COMPLETIONS,), pool=pool, concurrency=2, log_path=tmp_path / "w.log"
    )
    worker.start()
    try:
        assert worker.process is not None
        values = thread_nice_values(worker.process.pid)
        names = thread_names(worker.process.pid)
    finally:
        worker.stop()
    base = os.getpriority(os.PRIO_PROCESS, 0)
    main_thread = values.pop(worker.process.pid)
    if lowered:
        assert main_thread == base + 5
        loops = [tid for tid, name in names.items() if name == LOOP_THREAD_NAME]
        assert len(loops) == 1, names
        assert values[loops[0]] == base, "the stream loop did not keep the priority"
    else:
        assert main_thread == base
