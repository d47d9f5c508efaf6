"""In-process bulk compression with a model as summarizer, against the fake provider.

A rate limit is slept out and retried with the provider's Retry-After; an auth error is not
retried and the extractive summarizer takes over, so the transcript still fits.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.corpus import count_messages, messages
from tests.fakes.behaviour import Fault
from tests.fakes.server import FakeProviderServer
from tests.stack import BIG_MODEL, write_models_file
from tokenwindow.bulk.jobs import EXTRACTIVE, JobSpec
from tokenwindow.models import get_registry
from tokenwindow.settings import Settings, get_settings
from workers.bulk import LocalRunner, compress_in_process, summarizer_settings

BUDGET = 600
SUMMARY = "Ana owns the storage migration; the deadline is March 14."


@pytest.fixture
def settings(
    fake_provider: FakeProviderServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    monkeypatch.setenv(
        "TOKENWINDOW_MODELS_FILE", str(write_models_file(tmp_path / "m.yaml", fake_provider))
    )
    get_settings.cache_clear()
    get_registry.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
    get_registry.cache_clear()


def job(summarizer: str) -> dict[str, Any]:
    spec = JobSpec(model="gpt-4o", strategy="hybrid", budget=BUDGET, summarizer=summarizer)
    return spec.task_kwargs("t1", messages(random.Random(7), 40))


def test_a_rate_limit_is_slept_out_and_retried(
    settings: Settings, fake_provider: FakeProviderServer
) -> None:
    fake_provider.inject(Fault.error(429, retry_after=2.0))
    fake_provider.queue_replies(SUMMARY)
    sleeps: list[float] = []
    record = compress_in_process(job(BIG_MODEL), settings, sleep=sleeps.append)
    assert len(sleeps) == 1 and sleeps[0] >= 2.0
    assert SUMMARY in str(record["messages"])
    assert count_messages(record["messages"]) == record["tokens_after"] <= BUDGET


def test_an_auth_error_falls_back_to_extractive_without_retrying(
    settings: Settings, fake_provider: FakeProviderServer
) -> None:
    fake_provider.inject(Fault.error(401))
    sleeps: list[float] = []
    record = compress_in_process(job(BIG_MODEL), settings, sleep=sleeps.append)
    assert sleeps == []
    assert "error" not in record and not record["failsafe"]
    assert count_messages(record["messages"]) == record["tokens_after"] <= BUDGET


def test_extractive_needs_no_provider(
    settings: Settings, fake_provider: FakeProviderServer
) -> None:
    runner = LocalRunner(settings)
    runner.submit(job(EXTRACTIVE))
    written: list[dict[str, Any]] = []
    runner.drain(written.append)
    assert runner.outstanding == 0 and [r["id"] for r in written] == ["t1"]
    assert fake_provider.requests == []


def test_the_job_picks_the_summarizer(settings: Settings) -> None:
    assert summarizer_settings(settings, EXTRACTIVE).summarizer_model is None
    assert summarizer_settings(settings, BIG_MODEL).summarizer_model == BIG_MODEL
    assert summarizer_settings(settings, None) is settings
