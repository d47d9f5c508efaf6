"""pytest fixtures for the fake providers (registered by ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.remote import FakeProviderProcess
from tests.fakes.server import FakeProviderServer


@pytest.fixture
def fake_provider() -> Iterator[FakeProviderServer]:
    """A fresh in-process fake provider per test."""
    with FakeProviderServer() as server:
        yield server


@pytest.fixture(scope="session")
def fake_provider_process() -> Iterator[FakeProviderProcess]:
    """One fake provider in a child process for the session (for worker subprocesses)."""
    with FakeProviderProcess.spawn() as process:
        yield process


@pytest.fixture
def remote_fake_provider(fake_provider_process: FakeProviderProcess) -> FakeProviderProcess:
    """The session's fake provider process, reset before each test."""
    fake_provider_process.reset()
    return fake_provider_process
