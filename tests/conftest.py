"""Shared fixtures: a real Redis database flushed before use, settings pointing at it.

Tests use database 15 of the Redis on 127.0.0.1:6379 (``TEST_REDIS_URL`` overrides), so a
developer's data in database 0 is never touched. Under pytest-xdist each test process takes
the database below the previous one's (15, 14, ...): two processes' workers on one database
would take each other's tasks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis


def _test_redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    if not worker:
        return url
    base, _, db = url.rpartition("/")
    return f"{base}/{int(db) - int(worker.removeprefix('gw'))}"


TEST_REDIS_URL = _test_redis_url()
os.environ["REDIS_URL"] = TEST_REDIS_URL
os.environ.pop("BROKER_URL", None)
for _key in (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "SENTRY_DSN",
    "TOKENWINDOW_MODELS_FILE",
):
    os.environ.pop(_key, None)

pytest_plugins = ["tests.fakes.fixtures", "tests.harness", "tests.topologies"]


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"these tests need Redis at {TEST_REDIS_URL} (start redis-server)")
    client.flushdb()
    yield client
    client.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``long``, then ``slow``, come first. ``make test`` has pytest-xdist hand out
    files in this order (``--no-loadscope-reorder``), so the long ones (the fault scenarios
    first) run beside each other and the quick ones fill in at the end, rather than one long
    file running alone after the rest."""

    def rank(item: pytest.Item) -> int:
        return 0 if item.get_closest_marker("long") else 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)
