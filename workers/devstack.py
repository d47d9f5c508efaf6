"""Run the whole system locally from the Procfile: Redis, workers, Flower, then the demo.

``python -m workers.devstack`` (what ``make run`` calls) uses Redis at ``REDIS_URL``; when none
answers and ``REDIS_URL`` was not set, it starts an embedded Redis and says so. The workers and
Flower are started with the Procfile's own command lines, so what runs here is what runs in
production.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

from celery import Celery

from tokenwindow.errors import ConfigurationError
from tokenwindow.settings import Settings, load_settings
from workers.embedded_redis import EmbeddedRedis, redis_answers

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
READY_TIMEOUT_SECONDS = 90.0
LOCAL_PROCESS_TYPES = re.compile(r"^(worker\w*|flower)$")


def procfile_entries(path: Path = PROCFILE) -> dict[str, str]:
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, command = line.partition(":")
        if sep and not line.startswith("#"):
            entries[name.strip()] = command.strip()
    return entries


def node_names(entries: dict[str, str]) -> list[str]:
    """Worker node names from ``-n name@%h`` in the Procfile, with the host filled in."""
    host = socket.gethostname()
    names = []
    for name, command in entries.items():
        match = re.search(r"-n\s+(\S+)", command)
        if name.startswith("worker") and match:
            names.append(match.group(1).replace("%h", host))
    return names


def wait_for_workers(
    broker_url: str, nodes: list[str], processes: list[subprocess.Popen[bytes]]
) -> None:
    app = Celery(broker=broker_url, set_as_current=False)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline:
            exited = [cast(list[str], p.args)[-1] for p in processes if p.poll() is not None]
            if exited:
                raise RuntimeError(f"a process exited during start-up: {exited[0]}")
            replies = app.control.ping(timeout=1.0)
            answered = {node for reply in replies for node in reply}
            if set(nodes) <= answered:
                return
        raise TimeoutError(f"workers {nodes} did not answer within {READY_TIMEOUT_SECONDS} s")
    finally:
        app.close()


def with_interpreter_bin(path: str) -> str:
    """``PATH`` with this interpreter's scripts directory first."""
    return os.pathsep.join([str(Path(sys.executable).parent), path])


def start(command: str) -> subprocess.Popen[bytes]:
    """Run a Procfile command line as its own process group."""
    return subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, start_new_session=True)


def resolve_redis(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """Redis to use: ``REDIS_URL`` if it answers, else (when it was not set) an embedded one."""
    if redis_answers(settings.redis_url):
        return settings.redis_url, None
    if settings.redis_url_explicit:
        raise ConfigurationError(f"REDIS_URL={settings.redis_url} does not answer")
    embedded = EmbeddedRedis()
    return embedded.start(), embedded


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    # SIGTERM to the main process only: a warm shutdown lets running tasks finish. Signalling
    # the whole group would kill the pool children mid-task.
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, a supervisor) unwinds like Ctrl-C, so the children are stopped too.

    Further SIGTERMs are ignored so they cannot interrupt that shutdown halfway.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.devstack")
    parser.add_argument(
        "--keep", action="store_true", help="keep the system running after the demo, until Ctrl-C"
    )
    parser.add_argument("--no-demo", action="store_true", help="start the system only")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        settings = load_settings()
        url, embedded = resolve_redis(settings)
    except ConfigurationError as exc:
        print(f"tokenwindow: {exc.message}", file=sys.stderr)
        return 2
    if embedded is None:
        print(f"Using Redis at {url}")
    else:
        print(f"No Redis at {settings.redis_url}: started an embedded Redis server at {url}")
    # The children read their settings from the environment like any deployed process.
    os.environ["REDIS_URL"] = url
    # The Procfile says `celery ...`: find the one installed beside this interpreter even when
    # the virtualenv is not activated (`make run` calls .venv/bin/python directly).
    os.environ["PATH"] = with_interpreter_bin(os.environ.get("PATH", ""))
    entries = procfile_entries()
    processes = [start(cmd) for name, cmd in entries.items() if LOCAL_PROCESS_TYPES.match(name)]
    try:
        wait_for_workers(settings.broker_url or url, node_names(entries), processes)
        print("Workers are up. Flower listens on FLOWER_PORT (default 5555), basic auth on.")
        code = 0
        if not args.no_demo:
            code = subprocess.call([sys.executable, "-m", "tokenwindow.cli", "demo"], cwd=ROOT)
        if args.keep or args.no_demo:
            print("Running; press Ctrl-C to stop.")
            while all(p.poll() is None for p in processes):
                time.sleep(1)
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        stop(processes)
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main())
