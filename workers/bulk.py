"""One standalone transcript compressed: the bulk task's body and ``tokenwindow compress --local``.

Both paths share this so a transcript compresses the same way wherever it runs. They differ only
in how they wait before retrying a transient summarizer error: the task re-queues itself, the
in-process runner sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from strategies import get_strategy
from strategies.base import CompressionResult
from tokenwindow.bulk.jobs import EXTRACTIVE, error_record
from tokenwindow.counting import counter_for_encoding
from tokenwindow.errors import BudgetError, ProviderError, TokenWindowError
from tokenwindow.messages import validate_messages
from tokenwindow.models import get_registry
from tokenwindow.settings import Settings, get_settings
from workers.backoff import backoff
from workers.compressor import Compression, report


def summarizer_settings(settings: Settings, summarizer: str | None) -> Settings:
    """Settings whose summarizer is the one the job asked for; ``None`` keeps the configured."""
    if summarizer is None:
        return settings
    model = None if summarizer == EXTRACTIVE else summarizer
    return settings.model_copy(update={"summarizer_model": model})


def prepare(
    messages: object,
    *,
    model: str,
    strategy: str,
    budget: int | None,
    ratio: float | None,
    summarizer: str | None,
    settings: Settings,
) -> Compression:
    """A compression of one transcript to ``budget`` tokens, or ``ratio`` of its own count.

    Raises ``TokenWindowError`` for malformed messages, an unknown model or strategy, or a
    budget that is not a positive number of tokens: nothing a retry could fix.
    """
    valid = validate_messages(messages)
    get_strategy(strategy)
    spec = get_registry().get(model)
    counter = counter_for_encoding(spec.encoding, spec.exact)
    target = budget if budget is not None else int(counter.count_messages(valid) * (ratio or 0))
    if target <= 0:
        raise BudgetError(f"budget: must be a positive number of tokens, got {target}")
    return Compression(
        valid,
        strategy=strategy,
        budget=target,
        counter=counter,
        provider=spec.provider,
        settings=summarizer_settings(settings, summarizer),
    )


def transient_error(compression: Compression, result: CompressionResult) -> ProviderError | None:
    """The provider error worth retrying after, when that is why the summarizer failed."""
    error = compression.provider_error
    if result.error is not None and error is not None and error.retryable:
        return error
    return None


def transcript_record(transcript_id: str, result: CompressionResult) -> dict[str, Any]:
    """The output line of a compressed transcript."""
    return {"id": transcript_id, "messages": result.messages, **report(result)}


def compress_in_process(
    kwargs: dict[str, Any],
    settings: Settings,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """One transcript compressed here, sleeping out transient summarizer errors between tries."""
    transcript_id = str(kwargs["transcript_id"])
    try:
        compression = prepare(
            kwargs["messages"],
            model=kwargs["model"],
            strategy=kwargs["strategy"],
            budget=kwargs.get("budget"),
            ratio=kwargs.get("ratio"),
            summarizer=kwargs.get("summarizer"),
            settings=settings,
        )
    except TokenWindowError as exc:
        return error_record(transcript_id, exc.code, exc.message)
    result = compression.attempt()
    for retries in range(settings.max_retries):
        error = transient_error(compression, result)
        if error is None:
            break
        sleep(backoff(retries, error.retry_after))
        result = compression.attempt()
    return transcript_record(transcript_id, compression.fallback(result))


class LocalRunner:
    """Runs each submitted transcript in this process, one at a time (``--local``)."""

    capacity = 1

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._queued: list[dict[str, Any]] = []

    @property
    def outstanding(self) -> int:
        return len(self._queued)

    def submit(self, kwargs: dict[str, Any]) -> None:
        self._queued.append(kwargs)

    def drain(self, write: Callable[[dict[str, Any]], None]) -> None:
        while self._queued:
            write(compress_in_process(self._queued.pop(0), self.settings))

    def close(self) -> None:
        self._queued.clear()
