"""Run the whole system locally from the Procfile: Redis, workers, Flower, then the demo.

``python -m workers.devstack`` (what ``make run`` calls) uses Redis at ``REDIS_URL``; when none
answers and ``REDIS_URL`` was not set, it starts an embedded Redis and says so. The workers and
Flower are started with the Procfile's own command lines, so what runs here is what runs in
production. Their logs go to one file per process in a run folder (``.run/<time>/``), so the
terminal holds the demo's conversation alone; ``--show-logs`` prints them inline instead.
Flower gets a generated password unless ``FLOWER_BASIC_AUTH`` is set, and keeps its history in
``FLOWER_DATA_DIR`` (default ``.run/flower``).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery

from tokenwindow.cli import EXIT_UNREACHABLE, EXIT_USAGE
from tokenwindow.errors import TokenWindowError, UnreachableError
from tokenwindow.settings import Settings, load_settings
from tokenwindow.unreachable import (
    CONNECTION_ERRORS,
    hide_password,
    redis_unreachable,
    unreachable,
)
from workers.embedded_redis import EmbeddedRedis, redis_answers

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
READY_TIMEOUT_SECONDS = 90.0
LOCAL_PROCESS_TYPES = re.compile(r"^(worker\w*|flower)$")
RUNS = ROOT / ".run"
"""Where each run's folder of logs goes (gitignored)."""
FLOWER_USER = "admin"


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


class StartError(TokenWindowError):
    """Raised when a Procfile process exits or stays silent during start-up."""

    code = "start_failed"


def wait_for_workers(
    broker_url: str,
    nodes: list[str],
    processes: dict[str, subprocess.Popen[bytes]],
    logs: Path | None = None,
) -> None:
    app = Celery(broker=broker_url, set_as_current=False)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    try:
        while time.monotonic() < deadline:
            exited = [name for name, p in processes.items() if p.poll() is not None]
            if exited:
                where = f"; its log: {logs / f'{exited[0]}.log'}" if logs else ""
                raise StartError(f"{exited[0]} exited during start-up{where}")
            replies = app.control.ping(timeout=1.0)
            answered = {node for reply in replies for node in reply}
            if set(nodes) <= answered:
                return
        raise StartError(f"workers {nodes} did not answer within {READY_TIMEOUT_SECONDS:.0f} s")
    finally:
        app.close()


def check_broker(broker_url: str) -> None:
    """Raise kombu's ``OperationalError`` now if the broker does not answer, before any start."""
    app = Celery(broker=broker_url, set_as_current=False)
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
    finally:
        app.close()


def with_interpreter_bin(path: str) -> str:
    """``PATH`` with this interpreter's scripts directory first."""
    return os.pathsep.join([str(Path(sys.executable).parent), path])


def start(command: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """Run a Procfile command line as its own process group, its output to ``log`` if given."""
    if log is None:
        return subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, start_new_session=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=ROOT,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def run_folder(runs: Path = RUNS) -> Path:
    """A new folder for this run's logs, named by its start time (UTC)."""
    folder = runs / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def flower_environment(settings: Settings, runs: Path = RUNS) -> dict[str, str]:
    """What the Procfile's flower needs and the developer did not set: a password, a data dir.

    The password is generated per run (Flower has no built-in one); the data dir is kept
    across runs so Flower's task history survives a restart.
    """
    added = {}
    if settings.flower_basic_auth is None:
        added["FLOWER_BASIC_AUTH"] = f"{FLOWER_USER}:{secrets.token_urlsafe(12)}"
    data_dir = settings.flower_data_dir or runs / "flower"
    if settings.flower_data_dir is None:
        added["FLOWER_DATA_DIR"] = str(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return added


def flower_address(settings: Settings) -> str:
    prefix = settings.flower_url_prefix.strip("/")
    return f"http://{settings.flower_address}:{settings.flower_port}/{prefix}"


def resolve_redis(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    """Redis to use: ``REDIS_URL`` if it answers, else (when it was not set) an embedded one."""
    if redis_answers(settings.redis_url):
        return settings.redis_url, None
    if settings.redis_url_explicit:
        raise redis_unreachable(settings)
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
    parser = argparse.ArgumentParser(
        prog="python -m workers.devstack",
        description=(
            "Start Redis (embedded if none answers and REDIS_URL is unset), the Procfile's "
            "workers and Flower, then run `tokenwindow demo`. Needs nothing running."
        ),
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the system running after the demo, until Ctrl-C"
    )
    parser.add_argument("--no-demo", action="store_true", help="start the system only")
    parser.add_argument(
        "--show-logs",
        action="store_true",
        help="print the workers' and Flower's logs here instead of into the run folder",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    settings: Settings | None = None
    try:
        settings = load_settings()
        return _run(args, settings)
    except CONNECTION_ERRORS as exc:
        print(
            f"tokenwindow: {unreachable(exc, settings or load_settings()).message}", file=sys.stderr
        )
        return EXIT_UNREACHABLE
    except TokenWindowError as exc:
        print(f"tokenwindow: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE if isinstance(exc, UnreachableError) else EXIT_USAGE


def _run(args: argparse.Namespace, settings: Settings) -> int:
    url, embedded = resolve_redis(settings)
    if embedded is None:
        print(f"Using Redis at {hide_password(url)}")
    else:
        print(f"No Redis at {settings.redis_url}: started an embedded Redis server at {url}")
    # The children read their settings from the environment like any deployed process.
    os.environ["REDIS_URL"] = url
    # The Procfile says `celery ...`: find the one installed beside this interpreter even when
    # the virtualenv is not activated (`make run` calls .venv/bin/python directly).
    os.environ["PATH"] = with_interpreter_bin(os.environ.get("PATH", ""))
    generated = flower_environment(settings)
    os.environ.update(generated)
    check_broker(settings.broker_url or url)
    logs = None if args.show_logs else run_folder()
    entries = procfile_entries()
    processes = {
        name: start(cmd, logs / f"{name}.log" if logs else None)
        for name, cmd in entries.items()
        if LOCAL_PROCESS_TYPES.match(name)
    }
    try:
        wait_for_workers(settings.broker_url or url, node_names(entries), processes, logs)
        login = "login from FLOWER_BASIC_AUTH"
        if "FLOWER_BASIC_AUTH" in generated:
            user, _, password = generated["FLOWER_BASIC_AUTH"].partition(":")
            login = f"user {user}, password {password}"
        print(f"Workers are up. Flower: {flower_address(settings)} ({login})")
        if logs is not None:
            print(
                f"Worker and Flower logs: {logs.relative_to(ROOT)}/ (--show-logs prints them here)"
            )
        code = 0
        if not args.no_demo:
            code = subprocess.call([sys.executable, "-m", "tokenwindow.cli", "demo"], cwd=ROOT)
            if logs is not None:
                print(f"Worker and Flower logs of this run: {logs.relative_to(ROOT)}/")
        if args.keep or args.no_demo:
            print("Running; press Ctrl-C to stop.")
            while all(p.poll() is None for p in processes.values()):
                time.sleep(1)
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        stop(list(processes.values()))
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    sys.exit(main())
