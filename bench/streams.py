"""Reading many sessions' event streams the cheapest way: one plain ``XREAD`` over all of them.

What a consumer in any language does with the documented keys, and the floor the benchmarks
hold the client's own read against.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio

BLOCK_MS = 1_000
COUNT = 1_000
"""Entries per stream per read."""


async def read_all(
    client: redis.asyncio.Redis, cursors: dict[str, str], deadline: float
) -> AsyncIterator[tuple[float, str, str, dict[str, str]]]:
    """``(arrival, key, entry id, fields)`` of every stream in ``cursors`` (key -> the last id
    seen), until ``deadline`` (``time.monotonic``) or until the caller has deleted every key:
    deleting a key stops following that stream, from the next entry on."""
    while cursors and time.monotonic() < deadline:
        reply: Any = await client.xread(cursors, block=BLOCK_MS, count=COUNT)  # type: ignore[arg-type]
        arrival = time.time()
        for key, entries in reply:
            for entry_id, fields in entries:
                if key not in cursors:
                    break
                cursors[key] = entry_id
                yield arrival, key, entry_id, fields
