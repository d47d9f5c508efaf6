"""Small statistics the benchmarks share."""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Iterator, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: with few samples p99 is the maximum, not an interpolation."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


@contextlib.contextmanager
def without_gc_pauses() -> Iterator[None]:
    """Keep the measuring process's own cycle collector out of what it measures.

    A reader that keeps every event it receives grows to tens of thousands of objects, and a
    full collection over them stopped it for 40-90 ms in the middle of a run: delay that the
    reader added, charged to the service. What is allocated meanwhile is collected afterwards.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
