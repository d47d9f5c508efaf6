"""Worker start-up: from launching the Procfile's worker command to its first answered ping.

Each worker type runs its Procfile command line unchanged except for a unique node name, beside
the same command with ``-A bench.bare_app`` (a Celery app with no tasks), so the ratio is what
our imports, task modules and start-up hooks cost on top of Celery itself. Uses Redis database
14 so a developer's workers never see the benchmark's.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path
from statistics import median

from celery import Celery

from bench.report import Row
from bench.stack import BENCH_REDIS_URL
from workers.devstack import procfile_entries, with_interpreter_bin
from workers.embedded_redis import redis_answers

ROOT = Path(__file__).resolve().parent.parent
OUR_APP = "workers.app"
BARE_APP = "bench.bare_app"
REPEATS = 5
QUICK_REPEATS = 2
READY_TIMEOUT_SECONDS = 120.0
PING_TIMEOUT_SECONDS = 0.1


def _command(procfile_command: str, app: str, node: str) -> str:
    command = procfile_command.replace(f"-A {OUR_APP}", f"-A {app}")
    return re.sub(r"-n\s+\S+", f"-n {node}", command)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown of the main process, as a deploy would; a kill only if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def time_to_first_ping(procfile_command: str, app: str, control: Celery) -> float:
    """Seconds from spawning the worker to its first answered ping."""
    node = f"bench-{uuid.uuid4().hex[:8]}@localhost"
    command = _command(procfile_command, app, node)
    env = {
        **os.environ,
        "REDIS_URL": BENCH_REDIS_URL,
        "PATH": with_interpreter_bin(os.environ.get("PATH", "")),
    }
    env.pop("BROKER_URL", None)
    started = time.perf_counter()
    process = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while time.perf_counter() - started < READY_TIMEOUT_SECONDS:
            if process.poll() is not None:
                raise RuntimeError(f"{command!r} exited with {process.returncode}")
            replies = control.control.ping(destination=[node], timeout=PING_TIMEOUT_SECONDS)
            if any(node in reply for reply in replies):
                return time.perf_counter() - started
        raise TimeoutError(f"{command!r} did not answer a ping in {READY_TIMEOUT_SECONDS} s")
    finally:
        _stop(process)


def run(args: argparse.Namespace) -> list[Row]:
    """One row per worker type in the Procfile: median start-up, ours beside the bare app."""
    if not redis_answers(BENCH_REDIS_URL):
        raise RuntimeError(f"the start-up benchmark needs Redis at {BENCH_REDIS_URL}")
    repeats = QUICK_REPEATS if args.quick else REPEATS
    workers = {name: cmd for name, cmd in procfile_entries().items() if name.startswith("worker")}
    control = Celery(broker=BENCH_REDIS_URL, set_as_current=False)
    rows = []
    try:
        # Open the control connection before the clock starts for any run.
        control.control.ping(destination=["nobody@localhost"], timeout=PING_TIMEOUT_SECONDS)
        for name, command in workers.items():
            ours: list[float] = []
            bare: list[float] = []
            for _ in range(repeats):  # interleaved, so drift hits both alike
                ours.append(time_to_first_ping(command, OUR_APP, control))
                bare.append(time_to_first_ping(command, BARE_APP, control))
            ours_s, bare_s = median(ours), median(bare)
            rows.append(
                Row(
                    bench="startup",
                    case=f"{name} to first ping",
                    ours=f"{ours_s:.2f} s",
                    baseline=f"{bare_s:.2f} s",
                    ratio=f"{ours_s / bare_s:.2f}x",
                    note=f"median of {repeats}; baseline: same command, Celery app with no tasks",
                )
            )
    finally:
        control.close()
    return rows
