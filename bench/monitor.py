"""Count Redis round trips and commands from ``MONITOR``, split into phases by marker commands.

A round trip is one request a client sent and waited for: a plain command, an ``EVAL`` or
``EVALSHA`` (the commands its script runs show in MONITOR as ``lua`` and are not trips), or a
whole ``MULTI`` ... ``EXEC`` block, or a pipeline without MULTI: commands of one client that
MONITOR shows back to back, nobody else's between them, started within ``PIPELINE_GAP_SECONDS``
of each other (Redis runs a client's whole query buffer at once; a client that waits for each
reply leaves a loopback round trip between its commands). Commands are every
command Redis ran, scripts' and transactions' included, which is what ``INFO commandstats``
counts.

A trip is Celery's when every key it names is Celery's or kombu's (queues, bindings, unacked
bookkeeping, results, events and pidbox channels); anything else is the service's own. Celery's
names are stable, so the split needs no knowledge of the service's keys.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis

LINE = re.compile(r"^(?P<ts>\d+\.\d+) \[\d+ (?P<client>[^\]]+)\] (?P<args>.*)$")
PIPELINE_GAP_SECONDS = 0.00002
"""Commands of one client this close together arrived in one read: a pipeline."""
ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
MARK = "tokenwindow-bench-mark"
CELERY_KEYS = re.compile(
    r"^(_kombu\.|unacked|celery-task-meta-|celery$|celeryev|/\d+\.celeryev|.*\.pidbox$"
    r"|.*\.reply\.celery\.pidbox$)"
)
PRIORITY = re.compile(r"\\x06\\x16")
"""kombu's separator before a queue's priority suffix, as MONITOR escapes it."""
CELERY_COMMANDS = frozenset({"brpop", "blpop"})
"""A worker's consumer blocks on its queues; the queue names are the Procfile's."""
KEYLESS = frozenset({"multi", "exec", "discard", "client", "hello", "select", "ping", "info"})
WAIT_SECONDS = 10.0


@dataclass
class Trip:
    """One round trip: the commands it ran (a script's and a transaction's included)."""

    client: str
    """The connection's name (``CLIENT SETNAME``), else its address."""
    commands: list[list[str]] = field(default_factory=list)

    def touches(self, text: str) -> bool:
        return any(text in arg for command in self.commands for arg in command)


@dataclass
class Phase:
    trips: list[Trip]

    def split(self, queues: frozenset[str]) -> tuple[list[Trip], list[Trip]]:
        """(the service's own trips, Celery's trips)."""
        own: list[Trip] = []
        celery: list[Trip] = []
        for trip in self.trips:
            (celery if is_celery(trip, queues) else own).append(trip)
        return own, celery


def is_celery(trip: Trip, queues: frozenset[str]) -> bool:
    for name, *args in trip.commands:
        if name in CELERY_COMMANDS or name in KEYLESS:
            continue
        key = args[0] if args else ""
        if name in {"evalsha", "eval"}:
            return False  # Celery and kombu run no scripts
        if not (CELERY_KEYS.match(key) or PRIORITY.split(key)[0] in queues):
            return False
    return True


def parse(lines: list[str]) -> dict[str, Phase]:
    """Round trips between ``MARK`` echoes, by phase name."""
    phases: dict[str, Phase] = {}
    current: list[Trip] | None = None
    open_blocks: dict[str, Trip] = {}
    names: dict[str, str] = {}
    last: Trip | None = None
    last_client, last_at = "", 0.0
    for line in lines:
        match = LINE.match(line)
        if match is None:
            continue
        client, at = match["client"], float(match["ts"])
        name, *args = ARG.findall(match["args"])
        command = [name.lower(), *args]
        lowered = [arg.lower() for arg in args]
        if command[0] in {"client", "hello"} and "setname" in lowered:
            names[client] = args[lowered.index("setname") + 1]
        if command[0] == "echo" and len(command) == 2 and command[1].startswith(MARK):
            phase, _, edge = command[1].removeprefix(f"{MARK}:").rpartition(":")
            if edge == "start":
                current = []
            elif edge == "end" and current is not None:
                phases[phase] = Phase(current)
                current = None
            continue
        if current is None:
            continue
        if client == "lua" and last is not None:
            last.commands.append(command)
            last_at = at
            continue
        pipelined = client == last_client and at - last_at <= PIPELINE_GAP_SECONDS
        last_client, last_at = client, at
        block = open_blocks.get(client)
        if block is not None:
            block.commands.append(command)
            if command[0] in {"exec", "discard"}:
                del open_blocks[client]
            continue
        if pipelined and last is not None:
            last.commands.append(command)
            continue
        last = Trip(names.get(client, client), [command])
        current.append(last)
        if command[0] == "multi":
            open_blocks[client] = last
    return phases


class Monitor:
    """``redis-cli MONITOR`` into a file; ``start(phase)`` / ``end(phase)`` delimit phases."""

    def __init__(self, port: int, path: Path) -> None:
        self.port = port
        self.path = path
        self._client = redis.Redis(port=port)
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Monitor:
        with self.path.open("wb") as out:
            self._process = subprocess.Popen(
                ["redis-cli", "-p", str(self.port), "monitor"], stdout=out
            )
        self._echo("attached", repeat=True)  # until redis-cli has attached
        return self

    def start(self, phase: str) -> None:
        self._echo(f"{phase}:start")

    def end(self, phase: str) -> None:
        self._echo(f"{phase}:end")

    def _echo(self, name: str, *, repeat: bool = False) -> None:
        """Echo a marker and wait until MONITOR has written it, so no phase is cut short."""
        text = f"{MARK}:{name}"
        deadline = time.monotonic() + WAIT_SECONDS
        self._client.echo(text)
        while text not in self.path.read_text("utf-8", "replace"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"MONITOR did not show marker {name!r}")
            time.sleep(0.05)
            if repeat:
                self._client.echo(text)

    def phases(self) -> dict[str, Phase]:
        return parse(self.path.read_text("utf-8", "replace").splitlines())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._client.close()


def command_counts(trips: list[Trip]) -> Counter[str]:
    return Counter(command[0] for trip in trips for command in trip.commands)
