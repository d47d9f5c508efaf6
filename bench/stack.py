"""A running stack for pipeline benchmarks: fake provider, models file, Redis, Celery workers.

The fake provider runs in its own process so its HTTP work does not share the bench's GIL.
The service's workers are started exactly as in production (``celery -A workers.app worker``);
the bare no-op worker uses the same broker. ``Stack`` stops everything it started on exit,
even after an error, and restores the environment it changed.
"""

from __future__ import annotations

import functools
import os
import signal
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import redis
import yaml

from tests.fakes import FakeProviderProcess
from tests.fakes.specs import FAKE_KEY
from tests.harness import WorkerProcess
from tokenwindow.models import get_registry
from tokenwindow.settings import get_settings

BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
"""Flushed at start: never a developer's database (0) or the tests' (15)."""
MODEL = "bench-gpt"
"""gpt-4o behind the fake provider's OpenAI route."""
LOG_TAIL_CHARS = 3_000

SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class Stack:
    """``with Stack() as stack:`` then ``stack.workers(2)`` / ``stack.noop_workers(1)``."""

    def __init__(
        self,
        redis_url: str = BENCH_REDIS_URL,
        *,
        provider: Callable[[], FakeProviderProcess] = FakeProviderProcess.spawn,
    ) -> None:
        """``provider`` starts the fake provider (for example with a token delay)."""
        self.redis_url = redis_url
        self._spawn_provider = provider
        self._tmp = tempfile.TemporaryDirectory(prefix="tokenwindow-bench-")
        self.dir = Path(self._tmp.name)
        self.provider: FakeProviderProcess | None = None
        self.env: dict[str, str] = {}
        self._saved_env: dict[str, str | None] = {}
        self._workers: list[WorkerProcess] = []
        self._sigterm: SignalHandler = None
        self._handling_sigterm = False

    # --- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        # Workers run in their own process groups: a plain SIGTERM to the bench would orphan
        # them, still consuming from the shared broker. Turn it into an exit that cleans up.
        self._sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self._handling_sigterm = True
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        try:
            client.flushdb()
        finally:
            client.close()
        self.provider = self._spawn_provider()
        models = self.dir / "models.yaml"
        models.write_text(yaml.safe_dump(models_config(self.provider.openai_base)), "utf-8")
        self.env = {"REDIS_URL": self.redis_url, "TOKENWINDOW_MODELS_FILE": str(models)}
        for key, value in self.env.items():
            self._saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        os.environ.pop("BROKER_URL", None)
        get_settings.cache_clear()
        get_registry.cache_clear()

    def close(self) -> None:
        """Stop every worker and the provider, put the environment back; never raises."""
        for worker in reversed(self._workers):
            worker.stop()
        self._workers.clear()
        if self.provider is not None:
            self.provider.stop()
            self.provider = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        get_settings.cache_clear()
        get_registry.cache_clear()
        self._tmp.cleanup()
        if self._handling_sigterm:
            signal.signal(signal.SIGTERM, self._sigterm or signal.SIG_DFL)
            self._handling_sigterm = False

    # --- workers ---------------------------------------------------------------------------
    def workers(self, concurrency: int) -> WorkerProcess:
        """One service worker on all queues with ``concurrency`` pool processes."""
        return self._launch(WorkerProcess, concurrency, "worker")

    def noop_workers(self, concurrency: int) -> WorkerProcess:
        """The same harness worker, pointed at the bare no-op app."""
        from bench.noop_app import NOOP_QUEUE

        noop = functools.partial(WorkerProcess, app="bench.noop_app", queues=(NOOP_QUEUE,))
        return self._launch(noop, concurrency, "noop")

    def stop(self, worker: WorkerProcess) -> None:
        worker.stop()
        self._workers.remove(worker)

    def _launch(
        self, kind: Callable[..., WorkerProcess], concurrency: int, name: str
    ) -> WorkerProcess:
        log_path = self.dir / f"{name}-c{concurrency}-{uuid.uuid4().hex[:6]}.log"
        worker = kind(self.env, concurrency=concurrency, log_path=log_path)
        self._workers.append(worker)
        try:
            worker.start()
        except (RuntimeError, TimeoutError) as exc:
            tail = log_path.read_text("utf-8", "replace")[-LOG_TAIL_CHARS:]
            raise RuntimeError(f"{name} worker did not start: {exc}\n{tail}") from None
        return worker


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def models_config(openai_base: str) -> dict[str, object]:
    """LiteLLM proxy ``model_list`` with the one model the pipeline bench uses."""
    return {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": "openai/gpt-4o",
                    "api_base": openai_base,
                    "api_key": FAKE_KEY,
                },
                "model_info": {"max_input_tokens": 128_000, "max_output_tokens": 1_000},
            }
        ]
    }
