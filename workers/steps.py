"""One task thread at a time runs its steps beside the stream loop.

A threads-pool worker streams every reply on one event loop (``workers.engine``) and runs each
turn's steps (ingest, begin, finish: parsing, counting, the ledger's scripts) in the task's own
thread. They all share the interpreter's lock, and CPython hands that lock to whichever waiting
thread wakes first: in a burst of new turns, with dozens of task threads ready to run, the loop
waited behind them for tens of milliseconds at a time, and so did every token in the process.
Here a task thread holds the process's one step slot from its start to its end, and gives it
up only while its reply streams (``Engine.run``); Celery's consumer holds it while it hands a
received task to the pool (``workers.consumer``). Threads waiting for the slot sleep without
asking for the interpreter's lock, so the loop shares it with one other thread at most, and
new turns start one after another instead of all at once.

Giving the slot up during each Redis round trip too was tried: more lock hand-overs, more CPU
per chunk, and a higher p99 delivery delay at 500 streams than no slot at all
(``python -m bench concurrency``, README). Processes without a stream loop (the fast and
summarization workers) never open the slot, and holding it there costs nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class StepSlot:
    """``with STEPS.held():`` around a task's steps, ``with STEPS.waiting():`` around a wait
    that runs no steps."""

    def __init__(self) -> None:
        self._slot: threading.Lock | None = None
        self._holder = threading.local()

    def open(self) -> None:
        """From now on, one thread at a time runs inside ``held``."""
        if self._slot is None:
            self._slot = threading.Lock()

    @property
    def holding(self) -> bool:
        """Whether the calling thread holds the slot."""
        return bool(getattr(self._holder, "holding", False))

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Take the slot for the calling thread (free when it is not open, or already held)."""
        slot = self._slot
        if slot is None or self.holding:
            yield
            return
        with slot:
            self._holder.holding = True
            try:
                yield
            finally:
                self._holder.holding = False

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Give the slot up while the calling thread waits (free when it holds none)."""
        slot = self._slot
        if slot is None or not self.holding:
            yield
            return
        slot.release()
        self._holder.holding = False
        try:
            yield
        finally:
            slot.acquire()
            self._holder.holding = True


STEPS = StepSlot()
"""The process's slot, opened by its ``Engine``."""
