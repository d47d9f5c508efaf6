"""Waits shared by every task that retries; the backoff itself lives in ``workers.backoff``."""

from __future__ import annotations

import random

from workers.backoff import backoff

__all__ = ["backoff", "wait_for_session"]


def wait_for_session(attempt: int) -> float:
    """Poll interval for a turn waiting behind another turn of its session."""
    return min(0.05 * 2.0 ** min(attempt, 4), 1.0) * random.uniform(0.5, 1.0)
