"""Start the suite's workers and gateways by forking one interpreter that has done the imports.

A worker's cold start spends most of its CPU importing litellm, Celery, redis-py and httpx and
loading two tiktoken vocabularies; the suite starts dozens of workers. ``python -m
tests.forkserver`` does that once per test process and then forks a child per program. The
child takes the environment, working folder and log file asked for, a process group of its own
(so a kill of that group is a crash, as before) and runs the program's module as
``python -m`` would: settings, the models file, Celery's start-up and its signals all happen in
the child, after the fork.

Only libraries are loaded before the fork (and the settings class, to set the offline variables
of ``tokenwindow.offline`` as a worker would; no settings object is kept), and only settings
read later may differ from the fork server's own environment. A program asked for with any
other variable changed (a proxy, a tiktoken folder, ``PYTHONPATH``) gets a fresh interpreter
instead (see ``start``).

The protocol is JSON lines: a request on the server's stdin is answered by ``{"pid": N}`` on its
stdout, and each child's exit is reported there as ``{"exited": N, "returncode": R}`` (negative
for a signal, as ``subprocess`` reports it). When its stdin closes, the server kills what it
started and exits.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
PRELOADED = (
    "litellm",
    "litellm.llms.base_llm.chat.transformation",
    "openai",
    "httpx",
    "celery.bin.celery",
    "celery.worker",
    "kombu.transport.redis",
    "billiard.pool",
    "redis.asyncio",
    "pydantic_settings",
    "yaml",
    "uvicorn",
    "fastapi",
)
"""What every worker or gateway imports anyway, and reads no setting of ours while importing."""
VOCABULARIES = ("o200k_base", "cl100k_base")
READ_AFTER_IMPORT = (
    "TOKENWINDOW_",
    "REDIS_URL",
    "BROKER_URL",
    "SENTRY_DSN",
    "LOG_LEVEL",
    "FLOWER_",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "PYTEST_",
)
"""Variables a forked child may set differently from the server: nothing preloaded reads them."""
READY_TIMEOUT_SECONDS = 60.0
SPAWN_TIMEOUT_SECONDS = 30.0


class ChildProcess(Protocol):
    """What tests use of a started program: ``subprocess.Popen``'s own names."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


def start(
    module: str, args: list[str], *, env: dict[str, str], log: Path | None, cwd: Path = ROOT
) -> ChildProcess:
    """``python -m module args`` in a process group of its own, output to ``log``: forked from the
    warm server when ``env`` differs from it only in settings read after import."""
    log = log or Path(os.devnull)
    server = _server()
    if server.can_fork(env):
        return server.spawn(module, args, env=env, log=log, cwd=cwd)
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@functools.cache
def _server() -> ForkServer:
    return ForkServer(
        {key: value for key, value in os.environ.items() if not key.startswith(READ_AFTER_IMPORT)}
    )


# --- the test process's side -----------------------------------------------------------------
class ForkServer:
    """The client of one ``python -m tests.forkserver``, shared by every start in a process."""

    def __init__(self, env: dict[str, str]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.forkserver"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._requests = threading.Lock()
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._exited = threading.Condition()
        self._returncodes: dict[int, int] = {}
        threading.Thread(target=self._read, name="forkserver-replies", daemon=True).start()
        ready = self._reply(timeout=READY_TIMEOUT_SECONDS)
        self.env: dict[str, str] = ready["env"]
        """The server's environment after its imports (the offline defaults included)."""
        self._set_by_child = frozenset(ready["offline"])

    def can_fork(self, env: dict[str, str]) -> bool:
        """Whether a child given ``env`` runs as it would in a fresh interpreter. The offline
        defaults it lacks it sets itself (``tokenwindow.offline``), to the server's values."""
        requested = {**{key: self.env[key] for key in self._set_by_child}, **env}
        changed = {
            k for k in requested.keys() | self.env.keys() if requested.get(k) != self.env.get(k)
        }
        return all(key.startswith(READ_AFTER_IMPORT) for key in changed)

    def spawn(
        self, module: str, args: list[str], *, env: dict[str, str], log: Path, cwd: Path
    ) -> ForkedProcess:
        request = {"module": module, "args": args, "env": env, "cwd": str(cwd), "log": str(log)}
        assert self._process.stdin is not None
        with self._requests:
            self._process.stdin.write(json.dumps(request).encode() + b"\n")
            self._process.stdin.flush()
            reply = self._reply(timeout=SPAWN_TIMEOUT_SECONDS)
        return ForkedProcess(self, reply["pid"])

    def returncode(self, pid: int, timeout: float | None) -> int | None:
        """The child's exit code, waiting up to ``timeout`` seconds (0: not at all)."""
        with self._exited:
            self._exited.wait_for(lambda: pid in self._returncodes, timeout)
            return self._returncodes.get(pid)

    def _reply(self, timeout: float) -> dict[str, Any]:
        try:
            reply = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"the fork server did not answer in {timeout} s") from None
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            message = json.loads(line)
            if "exited" not in message:
                self._replies.put(message)
                continue
            with self._exited:
                self._returncodes[message["exited"]] = message["returncode"]
                self._exited.notify_all()
        self._replies.put({"error": f"the fork server exited with {self._process.wait()}"})


class ForkedProcess:
    """A child of the fork server, used as a ``subprocess.Popen``."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self._server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.returncode(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self._server.returncode(self.pid, timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


# --- the server's side -----------------------------------------------------------------------
def serve() -> None:
    """Import, then fork a child per request until stdin closes."""
    offline = _warm_up()
    _send({"env": dict(os.environ), "offline": sorted(offline)})
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup pipe is written
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
    selector.register(wakeup_read, selectors.EVENT_READ)
    pending = b""
    children: set[int] = set()
    while True:
        for key, _ in selector.select():
            if key.fd == wakeup_read:
                os.read(wakeup_read, 4096)
                continue
            data = os.read(key.fd, 1 << 16)
            if not data:
                _kill_all(children)
                return
            *requests, pending = (pending + data).split(b"\n")
            for request in requests:
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    for fd in (wakeup_read, wakeup_write):
                        os.close(fd)
                    _run_child(json.loads(request))  # exits the process, never returns
                # The child does this too: whichever runs first, a kill of the child's group
                # reaches it as soon as the test process knows its pid.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.setpgid(pid, pid)
                children.add(pid)
                _send({"pid": pid})
        _reap(children)


def _warm_up() -> dict[str, str]:
    """Import and load what every child needs; returns the offline variables it set first."""
    from tokenwindow.offline import offline_environment
    from tokenwindow.settings import load_settings

    offline = offline_environment(load_settings(_env_file=None))
    os.environ.update(offline)
    for module in PRELOADED:
        __import__(module)
    import tiktoken

    for name in VOCABULARIES:
        tiktoken.get_encoding(name)
    return offline


def _run_child(request: dict[str, Any]) -> None:
    """Become ``python -m module args``: this process's exit is the program's."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setpgid(0, 0)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[0] = request["cwd"]
    sys.argv = [request["module"], *request["args"]]
    import runpy

    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    raise SystemExit(0)


def _send(message: dict[str, Any]) -> None:
    os.write(sys.stdout.fileno(), json.dumps(message).encode() + b"\n")


def _reap(children: set[int]) -> None:
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        children.discard(pid)
        _send({"exited": pid, "returncode": os.waitstatus_to_exitcode(status)})


def _kill_all(children: set[int]) -> None:
    """The test process is gone: its workers must not outlive it."""
    for pid in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    serve()
