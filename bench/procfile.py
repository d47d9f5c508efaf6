"""The Procfile's worker process types, started exactly as the Procfile writes them.

Each ``worker...:`` line runs through ``sh -c`` as a Procfile runner (honcho, foreman, Heroku)
runs it, so its ``${VAR:-default}`` settings apply as shipped. Every worker gets its own
session, which is how ``bench.proctree`` finds its whole process tree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from celery import Celery

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "Procfile"
READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 20.0


def worker_commands(procfile: Path = PROCFILE) -> dict[str, str]:
    """``{process type: command}`` for every ``worker...`` line of the Procfile."""
    commands: dict[str, str] = {}
    for line in procfile.read_text("utf-8").splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip().startswith("worker"):
            commands[name.strip()] = command.strip()
    if not commands:
        raise RuntimeError(f"{procfile} has no worker process types")
    return commands


class ProcfileWorkers:
    """``with ProcfileWorkers(env, log_dir) as workers:``; ``workers.pids`` are the tree roots."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        # The commands call ``celery``: the one installed beside this interpreter.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, **env, "PATH": path}
        self.log_dir = log_dir
        self.commands = worker_commands()
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes]

    @property
    def roots(self) -> dict[str, int]:
        """``{process type: tree root pid}``."""
        return dict(zip(self.commands, self.pids, strict=True))

    def __enter__(self) -> ProcfileWorkers:
        try:
            for name, command in self.commands.items():
                with (self.log_dir / f"{name}.log").open("ab") as log:
                    self._processes.append(
                        subprocess.Popen(
                            ["/bin/sh", "-c", f"exec {command}"],
                            cwd=ROOT,
                            env=self.env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        """Until every worker answers a ping (each has its own node name)."""
        broker = self.env.get("BROKER_URL") or self.env["REDIS_URL"]
        app = Celery(broker=broker, set_as_current=False)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        try:
            while time.monotonic() < deadline:
                for process in self._processes:
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"a Procfile worker exited with {process.returncode}; "
                            f"see {self.log_dir}"
                        )
                if len(app.control.ping(timeout=1.0)) >= len(self._processes):
                    return
        finally:
            app.close()
        raise TimeoutError(f"Procfile workers did not answer in {READY_TIMEOUT_SECONDS} s")

    def stop(self) -> None:
        """Warm shutdown of each worker's process group, then SIGKILL what is left."""
        for process in self._processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._processes.clear()
