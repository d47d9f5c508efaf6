"""The generated agent traces: deterministic, valid requests, and questions with one answer."""

from __future__ import annotations

from bench.agent_traces import agent_trace
from strategies.text import words
from strategies.validity import check
from tokenwindow.messages import text_of, validate_messages


def test_the_same_seed_gives_the_same_trace() -> None:
    assert agent_trace(5) == agent_trace(5)
    assert agent_trace(5) != agent_trace(6)


def test_every_question_asks_for_a_fact_only_an_earlier_tool_result_first_held() -> None:
    for seed in range(4):
        trace = agent_trace(seed)
        validate_messages(trace.messages)
        check(trace.messages, "anthropic")
        assert trace.references
        for ref in trace.references:
            question = trace.messages[ref.index]
            assert question["role"] == "user"
            assert ref.fact.record in text_of(question)
            holders = [
                m for m in trace.messages[: ref.index] if ref.fact.value in words(text_of(m))
            ]
            assert holders[0]["role"] == "tool"
            assert (len(holders) > 1) == ref.fact.restated
