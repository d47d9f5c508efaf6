"""Property tests: every strategy keeps the contract on generated conversations."""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from strategies import STRATEGIES, compress
from strategies.base import CompressionRequest
from strategies.layout import layout
from tests.strategies.conversations import assert_invariants, conversations, smallest_window
from tokenwindow.counting import counter_for_encoding
from tokenwindow.errors import BudgetError, SummarizerError
from tokenwindow.messages import Message, is_system

COUNTER = counter_for_encoding("o200k_base")
PROVIDERS = st.sampled_from(["openai", "anthropic"])
SHARES = st.floats(min_value=0.05, max_value=1.3)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@settings(max_examples=60, deadline=None)
@given(messages=conversations(), share=SHARES, provider=PROVIDERS, recent=st.floats(0.1, 0.9))
def test_every_strategy_keeps_the_contract(
    name: str, messages: list[Message], share: float, provider: str, recent: float
) -> None:
    budget = max(1, int(COUNTER.count_messages(messages) * share))
    request = CompressionRequest(
        budget=budget, counter=COUNTER, provider=provider, recent_share=recent
    )
    try:
        result = compress(messages, name, request)
    except BudgetError:
        floor = (
            smallest_window(messages, COUNTER)
            if name == "failsafe"
            else layout(messages, COUNTER).floor()
        )
        assert budget < floor
        event("budget below the floor")
        return
    event("summarized" if result.summarized else "truncated" if result.truncated else "other")
    assert result.strategy == name
    assert result.failsafe == (name == "failsafe")
    assert_invariants(messages, result, budget=budget, counter=COUNTER, provider=provider)


def _failing(messages: list[Message], *, previous_summary: str | None, max_tokens: int) -> str:
    raise SummarizerError("model unavailable")


@pytest.mark.parametrize("name", ["summarization", "hybrid"])
@settings(max_examples=30, deadline=None)
@given(messages=conversations(), share=st.floats(0.2, 0.9))
def test_a_failed_summary_returns_the_input_unchanged(
    name: str, messages: list[Message], share: float
) -> None:
    budget = int(COUNTER.count_messages(messages) * share)
    request = CompressionRequest(budget=budget, counter=COUNTER, summarizer=_failing)
    try:
        result = compress(messages, name, request)
    except BudgetError:
        return
    if result.error is None:
        # Nothing needed summarizing, or there was no room for any summary at all.
        assert result.summary is None and not result.summarized
        return
    assert result.messages == messages
    assert "model unavailable" in result.error
    assert result.tokens_after == result.tokens_before
    assert not result.ok


def test_system_messages_survive_even_when_a_budget_is_tight() -> None:
    messages: list[Message] = [
        {"role": "system", "content": "You are terse."},
        *[
            {"role": "user" if k % 2 == 0 else "assistant", "content": f"turn {k} " * 40}
            for k in range(9)
        ],
    ]
    for name in STRATEGIES:
        result = compress(messages, name, CompressionRequest(budget=300, counter=COUNTER))
        assert result.messages[0] == messages[0]
        assert next(m for m in result.messages if is_system(m)) == messages[0]
        assert result.tokens_after <= 300
