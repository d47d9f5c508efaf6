"""Chaos tests run real workers against their own ``redis-server``.

A private server keeps other test runs' workers (which consume the shared database's queues)
away from these tests, and lets a test kill or freeze Redis without touching anyone else.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_server import RedisServer


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server
