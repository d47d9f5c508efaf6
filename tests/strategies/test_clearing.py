"""Tool-result clearing: placeholders first, then any strategy, never a call without its result."""

from __future__ import annotations

import copy
import re

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from strategies import STRATEGIES, compress
from strategies.base import ClearingPolicy, CompressionRequest
from strategies.clearing import clear_tool_results, floor_after_clearing, placeholder
from strategies.layout import layout
from strategies.validity import check
from tests.strategies.conversations import agent_conversations, smallest_window
from tokenwindow.counting import TokenCounter, counter_for_encoding
from tokenwindow.errors import BudgetError
from tokenwindow.messages import Message

COUNTER = counter_for_encoding("o200k_base")
PLACEHOLDER = re.compile(r"\[tool result cleared: (\w+), ([\d,]+) tokens\]")


def _request(budget: int, keep: int, provider: str = "openai") -> CompressionRequest:
    return CompressionRequest(
        budget=budget,
        counter=COUNTER,
        provider=provider,
        clearing=ClearingPolicy(keep_recent=keep),
    )


def _floor(messages: list[Message], counter: TokenCounter) -> int:
    return layout(messages, counter).floor()


def _names(messages: list[Message]) -> dict[str, str]:
    return {c["id"]: c["function"]["name"] for m in messages for c in m.get("tool_calls") or ()}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@settings(max_examples=60, deadline=None)
@given(
    messages=agent_conversations(),
    share=st.floats(0.05, 1.1),
    keep=st.integers(0, 4),
    provider=st.sampled_from(["openai", "anthropic"]),
)
def test_clearing_keeps_every_contract(
    name: str, messages: list[Message], share: float, keep: int, provider: str
) -> None:
    raw = copy.deepcopy(messages)
    budget = max(1, int(COUNTER.count_messages(messages) * share))
    request = _request(budget, keep, provider)
    try:
        result = compress(messages, name, request)
    except BudgetError:
        cleared = clear_tool_results(
            messages, budget=budget, counter=COUNTER, policy=ClearingPolicy(keep)
        )
        lowest = smallest_window if name == "failsafe" else _floor
        assert budget < lowest(cleared.messages, COUNTER)
        event("budget below the floor")
        return
    out = result.messages
    assert messages == raw, "the input (the raw transcript) is never modified"
    assert result == compress(messages, name, request), "deterministic"
    assert result.tokens_before == COUNTER.count_messages(messages)
    assert result.tokens_after == COUNTER.count_messages(out)
    if result.tokens_before <= budget:
        assert out == messages and result.tool_results_cleared == 0
        return
    assert result.tokens_after <= budget
    check(out, provider)  # no orphan result, no unanswered call
    originals = {m["tool_call_id"]: m for m in messages if m["role"] == "tool"}
    names = _names(messages)
    placeholders = 0
    for m in (m for m in out if m["role"] == "tool"):
        original = originals[m["tool_call_id"]]
        if m == original:
            continue
        found = PLACEHOLDER.fullmatch(str(m["content"]))
        if result.truncated and found is None:
            continue  # the failsafe cut the middle of a result it could not clear
        assert found is not None, m
        assert found[1] == names[m["tool_call_id"]]
        assert int(found[2].replace(",", "")) == COUNTER.count_message(original)
        placeholders += 1
    assert placeholders == result.tool_results_cleared
    event(f"cleared {min(placeholders, 3)}+")
    if not result.truncated:
        for recent in [m for m in messages if m["role"] == "tool"][len(originals) - keep :]:
            if recent["tool_call_id"] in {m.get("tool_call_id") for m in out}:
                assert recent in out, "the newest results stay whole"


@settings(max_examples=80, deadline=None)
@given(messages=agent_conversations(), share=st.floats(0.3, 1.0), keep=st.integers(0, 3))
def test_clearing_goes_only_as_far_as_the_budget_needs(
    messages: list[Message], share: float, keep: int
) -> None:
    budget = int(COUNTER.count_messages(messages) * share)
    cleared = clear_tool_results(
        messages, budget=budget, counter=COUNTER, policy=ClearingPolicy(keep)
    )
    if not cleared.indices:
        return
    assert cleared.indices == sorted(cleared.indices), "oldest first"
    newest = cleared.indices[-1]
    one_less = list(cleared.messages)
    one_less[newest] = messages[newest]
    assert COUNTER.count_messages(one_less) > budget
    assert COUNTER.count_messages(cleared.messages) + cleared.tokens_removed == (
        COUNTER.count_messages(messages)
    )


def _agent(rounds: int, result_words: int) -> list[Message]:
    messages: list[Message] = [{"role": "user", "content": "Plan my week."}]
    for k in range(rounds):
        call = {
            "id": f"c{k}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"},
        }
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})  # type: ignore[list-item]
        messages.append(
            {"role": "tool", "tool_call_id": f"c{k}", "content": f"day {k} sunny " * result_words}
        )
    return messages


def test_a_long_tool_loop_after_one_user_turn_fits_without_cutting_anything() -> None:
    messages = _agent(rounds=30, result_words=375)
    budget = 4_000
    result = compress(messages, "sliding_window", _request(budget, keep=2))
    assert result.tokens_after <= budget and not result.truncated
    assert result.messages[-2:] == messages[-2:]
    assert result.messages[-3] == messages[-3]
    assert len(result.messages) == len(messages)
    assert result.tool_results_cleared == 28
    assert result.messages[2]["content"] == placeholder(
        "get_weather", COUNTER.count_message(messages[2])
    )
    without = compress(messages, "failsafe", CompressionRequest(budget=budget, counter=COUNTER))
    assert without.truncated, "without clearing only cutting the newest turn would fit"


def test_clear_at_least_clears_in_batches() -> None:
    messages = _agent(rounds=10, result_words=100)
    budget = COUNTER.count_messages(messages) - 10
    one = clear_tool_results(messages, budget=budget, counter=COUNTER, policy=ClearingPolicy(2))
    batch = clear_tool_results(
        messages, budget=budget, counter=COUNTER, policy=ClearingPolicy(2, clear_at_least=1_000)
    )
    assert one.indices == [2]
    assert len(batch.indices) > 1 and batch.tokens_removed >= 1_000


def test_the_summarizer_reads_the_results_that_were_cleared() -> None:
    messages = _agent(rounds=12, result_words=200)
    messages[2] = {**messages[2], "content": "the vault code is 7731 " * 50}
    seen: list[Message] = []

    def summarizer(span: list[Message], *, previous_summary: str | None, max_tokens: int) -> str:
        seen.extend(span)
        return "vault code 7731"

    messages += [{"role": "assistant", "content": "done"}, {"role": "user", "content": "And?"}]
    request = CompressionRequest(
        budget=1_000, counter=COUNTER, summarizer=summarizer, clearing=ClearingPolicy(2)
    )
    result = compress(messages, "summarization", request)
    assert result.summary == "vault code 7731"
    assert messages[2] in seen
    assert not any(PLACEHOLDER.fullmatch(str(m.get("content"))) for m in seen)


def test_off_by_default_in_a_request() -> None:
    messages = _agent(rounds=6, result_words=100)
    messages += [{"role": "assistant", "content": "done"}, {"role": "user", "content": "And?"}]
    budget = COUNTER.count_messages(messages) // 2
    result = compress(
        messages, "sliding_window", CompressionRequest(budget=budget, counter=COUNTER)
    )
    assert result.tool_results_cleared == 0
    assert all(m in messages for m in result.messages)


def test_the_floor_after_clearing_is_what_no_strategy_can_go_below() -> None:
    messages = _agent(rounds=30, result_words=375)
    policy = ClearingPolicy(keep_recent=2)
    floor = floor_after_clearing(messages, COUNTER, policy)
    assert floor < 4_000 < floor_after_clearing(messages, COUNTER, None)
    result = compress(messages, "sliding_window", _request(floor, keep=2))
    assert result.tokens_after <= floor and not result.truncated
    with pytest.raises(BudgetError):
        compress(messages, "sliding_window", _request(floor - 1, keep=2))
