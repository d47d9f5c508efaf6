"""Compression with fallbacks: the configured summarizer, then extractive, then the failsafe.

Strategies are all-or-nothing and report a summarizer failure instead of raising; this module
keeps the last provider error so the calling task can retry what is transient before falling
back to the summarizer that needs no network.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

import strategies
from strategies.base import ClearingPolicy, CompressionRequest, CompressionResult, Summarizer
from strategies.chunking import chunked
from strategies.extractive import ExtractiveSummarizer
from tokenwindow.counting import TokenCounter, counter_for
from tokenwindow.errors import BudgetError, ProviderError
from tokenwindow.messages import Message
from tokenwindow.models import get_registry
from tokenwindow.settings import Settings
from tokenwindow.window import window_for

FAILSAFE = "failsafe"


def report(result: CompressionResult) -> dict[str, Any]:
    """The figures of a compression that task results and bulk output lines carry."""
    return {
        "strategy": result.strategy,
        "tokens_before": result.tokens_before,
        "tokens_after": result.tokens_after,
        "failsafe": result.failsafe,
        "truncated": result.truncated,
        "summarized": result.summarized,
        "dropped": result.dropped,
        "tool_results_cleared": result.tool_results_cleared,
        "tool_tokens_cleared": result.tool_tokens_cleared,
    }


class RecordingSummarizer:
    """Wraps a summarizer and remembers the provider error that made it fail."""

    def __init__(self, inner: Summarizer) -> None:
        self.inner = inner
        self.last_error: ProviderError | None = None

    def __call__(
        self, messages: list[Message], *, previous_summary: str | None, max_tokens: int
    ) -> str:
        try:
            return self.inner(messages, previous_summary=previous_summary, max_tokens=max_tokens)
        except ProviderError as exc:
            self.last_error = exc
            raise


def clearing_policy(settings: Settings) -> ClearingPolicy | None:
    """The tool-result clearing the settings ask for, or None when it is off."""
    if not settings.tool_clearing:
        return None
    return ClearingPolicy(settings.tool_keep_recent, settings.tool_clear_at_least)


def configured_summarizer(settings: Settings, counter: TokenCounter) -> RecordingSummarizer:
    """The LLM summarizer when ``summarizer_model`` is set, else the extractive one."""
    if settings.summarizer_model is None:
        return RecordingSummarizer(ExtractiveSummarizer(counter))
    from workers.llm import LLMSummarizer

    spec = get_registry().get(settings.summarizer_model)
    window = window_for(spec, settings)
    summarizer = LLMSummarizer(spec, settings)
    return RecordingSummarizer(chunked(summarizer, counter_for(spec), window.usable_input))


class Compression:
    """One compression of one window: a first attempt, then fallbacks that always fit."""

    def __init__(
        self,
        messages: list[Message],
        *,
        strategy: str,
        budget: int,
        counter: TokenCounter,
        provider: str,
        settings: Settings,
        summarizer: RecordingSummarizer | None = None,
    ) -> None:
        self.messages = messages
        self.strategy = strategy
        self.summarizer = summarizer or configured_summarizer(settings, counter)
        self._request = CompressionRequest(
            budget=budget,
            counter=counter,
            summarizer=self.summarizer,
            recent_share=settings.recent_share,
            provider=provider,
            interrupts=(SoftTimeLimitExceeded,),
            clearing=clearing_policy(settings),
        )

    @property
    def provider_error(self) -> ProviderError | None:
        return self.summarizer.last_error

    def attempt(self) -> CompressionResult:
        """The requested strategy with the configured summarizer; may report an error.

        A budget too small for the system prompt and newest turn goes straight to the
        failsafe, which cuts and flags rather than refusing.
        """
        try:
            return strategies.compress(self.messages, self.strategy, self._request)
        except BudgetError:
            return self.failsafe()

    def fallback(self, result: CompressionResult) -> CompressionResult:
        """Extractive summaries if the configured summarizer failed; the failsafe if still over."""
        if result.error is not None and not isinstance(self.summarizer.inner, ExtractiveSummarizer):
            extractive = ExtractiveSummarizer(self._request.counter)
            request = replace(self._request, summarizer=extractive)
            result = strategies.compress(self.messages, self.strategy, request)
        if result.error is not None or result.tokens_after > self._request.budget:
            result = self.failsafe()
        return result

    def failsafe(self) -> CompressionResult:
        """Deterministic, no network, always fits."""
        return strategies.compress(self.messages, FAILSAFE, self._request)

    def run(self) -> CompressionResult:
        """Attempt, then fall back: for callers that cannot retry."""
        return self.fallback(self.attempt())
