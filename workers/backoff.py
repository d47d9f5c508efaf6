"""Backoff with full jitter: shared by the tasks that re-queue themselves and by in-process bulk
compression, which sleeps instead."""

from __future__ import annotations

import random

BASE_SECONDS = 1.0
CAP_SECONDS = 60.0


def backoff(retries: int, retry_after: float | None = None) -> float:
    """Seconds before the next try: the provider's Retry-After if given, else jittered 2^n."""
    if retry_after is not None and retry_after > 0:
        return min(retry_after, CAP_SECONDS) + random.uniform(0, BASE_SECONDS)
    return random.uniform(0, min(CAP_SECONDS, BASE_SECONDS * 2**retries))
