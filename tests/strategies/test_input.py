"""Malformed input and impossible budgets get clear errors, never unexplained exceptions."""

from __future__ import annotations

import pytest

from strategies import STRATEGIES, compress
from strategies.base import CompressionRequest
from strategies.summary import summary_message
from tokenwindow.counting import TokenCounter, counter_for_encoding
from tokenwindow.errors import BudgetError, InvalidInputError
from tokenwindow.messages import Message

COUNTER = counter_for_encoding("o200k_base")
REQUEST = CompressionRequest(budget=50, counter=COUNTER)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_an_orphan_tool_result_is_named(name: str) -> None:
    messages: list[Message] = [
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "call_9", "content": "42"},
    ]
    with pytest.raises(InvalidInputError, match=r"messages\[1\].tool_call_id"):
        compress(messages, name, REQUEST)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_an_empty_conversation_is_rejected(name: str) -> None:
    with pytest.raises(InvalidInputError, match="must not be empty"):
        compress([], name, REQUEST)


@pytest.mark.parametrize("name", ["sliding_window", "summarization", "hybrid"])
def test_a_budget_below_the_system_prompt_is_a_budget_error(name: str) -> None:
    messages: list[Message] = [
        {"role": "system", "content": "rule " * 200},
        {"role": "user", "content": "hi"},
    ]
    with pytest.raises(BudgetError, match="below"):
        compress(messages, name, REQUEST)


def test_a_non_positive_budget_and_an_unknown_strategy_are_named() -> None:
    messages: list[Message] = [{"role": "user", "content": "hi"}]
    with pytest.raises(BudgetError, match="positive"):
        compress(messages, "hybrid", CompressionRequest(budget=0, counter=COUNTER))
    with pytest.raises(InvalidInputError, match="known: "):
        compress(messages, "shrink", REQUEST)


def test_two_running_summaries_are_rejected() -> None:
    messages = [summary_message("a"), summary_message("b"), {"role": "user", "content": "hi"}]
    with pytest.raises(InvalidInputError, match="second running summary"):
        compress(messages, "hybrid", REQUEST)  # type: ignore[arg-type]


def test_a_mid_conversation_system_message_is_kept_ahead_of_the_summary() -> None:
    messages: list[Message] = [
        {"role": "user", "content": "old " * 200},
        {"role": "system", "content": "Switch to French."},
        {"role": "assistant", "content": "old answer " * 100},
        {"role": "user", "content": "latest question"},
    ]
    result = compress(messages, "hybrid", CompressionRequest(budget=120, counter=COUNTER))
    assert result.messages[0] == messages[1]
    assert result.messages[-1] == messages[3]
    assert result.summarized == [(0, 1), (2, 3)]


class CountingCounter(TokenCounter):
    """Counts how often messages are measured."""

    calls = 0

    def count_message(self, message: Message) -> int:
        self.calls += 1
        return super().count_message(message)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_each_message_is_measured_a_bounded_number_of_times(name: str) -> None:
    counter = CountingCounter("o200k_base")
    messages: list[Message] = [
        {"role": "user" if k % 2 == 0 else "assistant", "content": f"message {k}"}
        for k in range(3001)
    ]
    compress(messages, name, CompressionRequest(budget=2000, counter=counter))
    assert counter.calls <= 3 * len(messages)
