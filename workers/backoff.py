"""Retry timing, in one place.

Backoff with full jitter is shared by the tasks that re-queue themselves and by in-process bulk
compression, which sleeps instead; turns waiting for their session poll on a shorter clock.
"""

from __future__ import annotations

import random

BASE_SECONDS = 1.0
CAP_SECONDS = 60.0


def backoff(retries: int, retry_after: float | None = None) -> float:
    """Seconds before the next try: the provider's Retry-After if given, else jittered 2^n."""
    if retry_after is not None and retry_after > 0:
        return min(retry_after, CAP_SECONDS) + random.uniform(0, BASE_SECONDS)
    return random.uniform(0, min(CAP_SECONDS, BASE_SECONDS * 2**retries))


def wait_for_session(attempt: int) -> float:
    """Poll interval for a turn waiting behind another turn of its session."""
    return min(0.05 * 2.0 ** min(attempt, 4), 1.0) * random.uniform(0.5, 1.0)
