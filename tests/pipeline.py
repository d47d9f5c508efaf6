"""A running pipeline for tests: fake provider, models file, one real worker, client settings.

Test packages that need it import the `pipeline` fixture into their conftest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import TEST_REDIS_URL
from tests.fakes.server import FakeProviderServer
from tests.stack import Stack, flush

Pipeline = Stack[FakeProviderServer]
PIPELINE_ENV = {
    "TOKENWINDOW_PROVIDER_TIMEOUT_SECONDS": "5",
    "TOKENWINDOW_MAX_RETRIES": "3",
    "TOKENWINDOW_STREAM_FLUSH_MS": "0",
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """One fake provider and one real worker (all queues, 2 processes) per test module."""
    flush(TEST_REDIS_URL)
    workdir = tmp_path_factory.mktemp("pipeline")
    with Stack(
        TEST_REDIS_URL, provider=FakeProviderServer, workdir=workdir, env=PIPELINE_ENV
    ) as stack:
        stack.worker()
        yield stack
