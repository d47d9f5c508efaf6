"""The cycle collector of a streaming process runs where it delays no token: after a flush.

CPython collects when allocations cross a threshold, wherever that happens: on the loop in
the middle of a flush interval, or in a task thread while the loop waits for the interpreter
lock. With hundreds of replies streaming, a middle pass holds that lock for 3-9 ms and each
lands on top of the flush interval of every stream in the process. A process that streams
therefore turns automatic collection off and runs the generational schedule on its loop just
after a flush is written: the next flush is not due before a pass shorter than the interval
ends, so the pass delays nothing. A loop with nothing to flush still collects, on a timer.

A full pass is longer than an interval: it visits every reference of every object not frozen
at start-up (``workers.lifecycle``), 117,000 of them spread over the heap at 500 streams, and
took 17-36 ms of CPU. CPython runs one only when its old generation has had a quarter more
objects moved in since the last; here, when that generation holds a quarter more objects than
after the last, and at least ``OLD_FLOOR`` more: state that comes and goes with the streams
does not set one off, and what piles up (garbage in cycles among it) does. Without the floor,
the old generation of a worker just started (nearly empty, the rest frozen) grew by far more
than a quarter in its first burst of streams, from 17,000 objects to 50,000 at 500, and the
pass that followed found nothing to free and held the loop for 37 ms.
"""

from __future__ import annotations

import asyncio
import gc

IDLE_SECONDS = 1.0
OLD_GROWTH = 1.25
"""A full pass is due when the old generation has grown by this factor since the last one..."""
OLD_FLOOR = 100_000
"""...and by at least this many objects: three times what 500 streams added to it at once."""


class Collector:
    """Owns the process's cycle collector once started; ``collect`` is called after flushes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_seconds: float = IDLE_SECONDS):
        self._loop = loop
        self._idle_seconds = idle_seconds
        self._middle_passes = 0
        self._full_pass_at = self._next_full_pass()

    def start(self) -> None:
        gc.disable()
        self._loop.call_soon_threadsafe(self._idle)

    def collect(self) -> None:
        """Run the pass that is due, if any: CPython's thresholds, young generation first."""
        young, middle, old = gc.get_threshold()
        counts = gc.get_count()
        if counts[0] <= young:
            return
        generation = 0 if counts[1] < middle else 1
        if generation:
            self._middle_passes += 1
            if self._middle_passes >= old:
                self._middle_passes = 0
                if len(gc.get_objects(2)) >= self._full_pass_at:
                    generation = 2
        gc.collect(generation)
        if generation == 2:
            self._full_pass_at = self._next_full_pass()

    @staticmethod
    def _next_full_pass() -> float:
        """The old generation's size at which the next full pass is due."""
        old = len(gc.get_objects(2))
        return max(old * OLD_GROWTH, old + OLD_FLOOR)

    def _idle(self) -> None:
        self.collect()
        self._loop.call_later(self._idle_seconds, self._idle)
