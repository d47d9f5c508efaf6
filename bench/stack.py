"""The stack pipeline benchmarks run: ``tests.stack.Stack`` on the bench's own database.

The fake provider runs in its own process so its HTTP work does not share the bench's GIL.
The database is flushed first, and a SIGTERM to the bench still stops every worker it started.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from bench.noop_app import NOOP_QUEUE
from tests.fakes import FakeProviderProcess
from tests.harness import WorkerProcess
from tests.stack import BIG_MODEL, Stack, flush

BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
"""Flushed at start: never a developer's database (0) or a test process's (15 down to 12)."""
MODEL = BIG_MODEL
"""gpt-4o behind the fake provider's OpenAI route."""

SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class BenchStack(Stack[FakeProviderProcess]):
    """``with BenchStack() as stack:`` then ``stack.worker(concurrency=2)`` or ``noop_worker``."""

    def __init__(
        self,
        redis_url: str = BENCH_REDIS_URL,
        *,
        provider: Callable[[], FakeProviderProcess] = FakeProviderProcess.spawn,
    ) -> None:
        """``provider`` starts the fake provider (for example with a token delay)."""
        super().__init__(redis_url, provider=provider)
        self._sigterm: SignalHandler = None

    def __enter__(self) -> BenchStack:
        # Workers run in their own process groups: a plain SIGTERM to the bench would orphan
        # them, still consuming from the shared broker. Turn it into an exit that cleans up.
        self._sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            flush(self.redis_url)
            super().__enter__()
        except BaseException:
            signal.signal(signal.SIGTERM, self._sigterm or signal.SIG_DFL)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            signal.signal(signal.SIGTERM, self._sigterm or signal.SIG_DFL)

    def noop_worker(self, concurrency: int) -> WorkerProcess:
        """The same harness worker, pointed at the bare no-op app."""
        return self.worker(concurrency=concurrency, app="bench.noop_app", queues=(NOOP_QUEUE,))


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
