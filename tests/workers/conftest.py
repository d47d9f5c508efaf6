"""The ledger's tests run each case on fakeredis (Lua) and on the real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest
import redis

from tests.conftest import TEST_REDIS_URL


@pytest.fixture(params=["fakeredis", "redis"])
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    if request.param == "fakeredis":
        yield fakeredis.FakeRedis()
        return
    real = redis.Redis.from_url(TEST_REDIS_URL)
    real.flushdb()
    yield real
    real.close()
