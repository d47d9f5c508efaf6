"""The failsafe always fits: it cuts the middle of the newest turn and says so."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import compress
from strategies.base import CompressionRequest
from strategies.layout import layout
from strategies.truncate import MARKER
from tests.strategies.conversations import assert_invariants, conversations, smallest_window
from tokenwindow.counting import counter_for_encoding
from tokenwindow.errors import BudgetError
from tokenwindow.messages import Message

COUNTER = counter_for_encoding("o200k_base")
MARK = MARKER.split("{n}")[1].strip()


def _request(budget: int) -> CompressionRequest:
    return CompressionRequest(budget=budget, counter=COUNTER)


def test_a_newest_message_larger_than_the_budget_has_its_middle_cut() -> None:
    big = "start of the question " + "filler " * 3000 + " the actual ask at the end"
    messages: list[Message] = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "earlier question"},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": big},
    ]
    result = compress(messages, "failsafe", _request(200))
    assert result.failsafe and result.truncated
    assert result.tokens_after <= 200
    assert result.messages[0] == messages[0]
    last = result.messages[-1]["content"]
    assert isinstance(last, str)
    assert last.startswith("start of the question") and last.endswith("at the end")
    assert MARK in last
    assert result.dropped == [(1, 3)]


def test_multi_part_content_is_cut_in_its_largest_text_part() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    messages: list[Message] = [
        {"role": "user", "content": [image, {"type": "text", "text": "describe " * 2000}]}
    ]
    budget = COUNTER.count_messages([{"role": "user", "content": [image]}]) + 100
    result = compress(messages, "failsafe", _request(budget))
    assert result.truncated and result.tokens_after <= budget
    content = result.messages[0]["content"]
    assert isinstance(content, list) and content[0] == image


def test_other_strategies_refuse_what_only_the_failsafe_can_cut() -> None:
    messages: list[Message] = [{"role": "user", "content": "word " * 1000}]
    with pytest.raises(BudgetError, match="failsafe"):
        compress(messages, "hybrid", _request(100))
    assert compress(messages, "failsafe", _request(100)).truncated


def test_an_impossible_budget_is_a_clear_error() -> None:
    with pytest.raises(BudgetError, match="too small"):
        compress([{"role": "user", "content": "hello " * 100}], "failsafe", _request(8))


@settings(max_examples=60, deadline=None)
@given(
    messages=conversations(),
    where=st.floats(0, 1),
    provider=st.sampled_from(["openai", "anthropic"]),
)
def test_between_the_smallest_window_and_the_floor_it_cuts_and_fits(
    messages: list[Message], where: float, provider: str
) -> None:
    low, high = smallest_window(messages, COUNTER), layout(messages, COUNTER).floor()
    if low >= high:
        return
    budget = low + int((high - 1 - low) * where)
    request = CompressionRequest(budget=budget, counter=COUNTER, provider=provider)
    result = compress(messages, "failsafe", request)
    assert result.truncated and result.failsafe
    assert_invariants(messages, result, budget=budget, counter=COUNTER, provider=provider)
