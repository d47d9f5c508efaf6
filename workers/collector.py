"""The cycle collector of a streaming process runs where it delays no token: after a flush.

CPython collects when allocations cross a threshold, wherever that happens: on the loop in
the middle of a flush interval, or in a task thread while the loop waits for the interpreter
lock. With 500 replies streaming, a full pass holds that lock for 15-20 ms and a middle one
for 3-9 ms, and each lands on top of the flush interval of every stream in the process. A
process that streams therefore turns automatic collection off and runs the same schedule
(CPython's thresholds, young generation first) on its loop just after a flush is written:
the next flush is not due before a pass shorter than the interval ends, so the pass delays
nothing. A loop with nothing to flush still collects, on a timer.
"""

from __future__ import annotations

import asyncio
import gc

IDLE_SECONDS = 1.0


class Collector:
    """Owns the process's cycle collector once started; ``collect`` is called after flushes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_seconds: float = IDLE_SECONDS):
        self._loop = loop
        self._idle_seconds = idle_seconds

    def start(self) -> None:
        gc.disable()
        self._loop.call_soon_threadsafe(self._idle)

    def collect(self) -> None:
        """Collect the generation CPython would collect now, if any is due."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        if counts[0] <= thresholds[0]:
            return
        generation = 0
        while generation < 2 and counts[generation + 1] + 1 > thresholds[generation + 1]:
            generation += 1
        gc.collect(generation)

    def _idle(self) -> None:
        self.collect()
        self._loop.call_later(self._idle_seconds, self._idle)
