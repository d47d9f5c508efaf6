"""The summarizer's own input never exceeds its model's window."""

from __future__ import annotations

import pytest

from strategies.chunking import chunked
from strategies.summary import summary_prompt
from tokenwindow.counting import counter_for_encoding
from tokenwindow.errors import SummarizerError
from tokenwindow.messages import Message, text_of

COUNTER = counter_for_encoding("o200k_base")


class Measuring:
    """Records the size of every request it would send, and answers within ``max_tokens``."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(
        self, messages: list[Message], *, previous_summary: str | None, max_tokens: int
    ) -> str:
        prompt = summary_prompt(messages, previous_summary=previous_summary, max_tokens=max_tokens)
        self.sizes.append(COUNTER.count_messages(prompt))
        words = " ".join(text_of(m) for m in messages).split()
        text = " ".join(words[: max_tokens // 2])
        return text or "empty"


def test_a_short_span_is_one_call() -> None:
    inner = Measuring()
    span: list[Message] = [{"role": "user", "content": "hello there"}]
    chunked(inner, COUNTER, 2000)(span, previous_summary="before", max_tokens=100)
    assert len(inner.sizes) == 1


def test_a_long_span_is_mapped_then_reduced_within_the_window() -> None:
    inner = Measuring()
    span: list[Message] = [
        {"role": "user" if k % 2 == 0 else "assistant", "content": f"fact {k} " * 40}
        for k in range(200)
    ]
    summary = chunked(inner, COUNTER, 1500)(span, previous_summary="old " * 300, max_tokens=300)
    assert len(inner.sizes) > 2
    assert max(inner.sizes) <= 1500
    assert COUNTER.count_text(summary) <= 300


def test_one_message_larger_than_the_window_is_split() -> None:
    inner = Measuring()
    span: list[Message] = [{"role": "tool", "tool_call_id": "c1", "content": "log line " * 5000}]
    chunked(inner, COUNTER, 1000)(span, previous_summary=None, max_tokens=200)
    assert max(inner.sizes) <= 1000


def test_a_window_too_small_to_work_in_is_a_summarizer_error() -> None:
    span: list[Message] = [{"role": "user", "content": "word " * 500}]
    with pytest.raises(SummarizerError, match="no room"):
        chunked(Measuring(), COUNTER, 250)(span, previous_summary=None, max_tokens=50)


def test_an_inner_summary_over_its_limit_is_a_summarizer_error() -> None:
    def verbose(messages: list[Message], *, previous_summary: str | None, max_tokens: int) -> str:
        return "word " * (max_tokens * 2)

    with pytest.raises(SummarizerError, match="exceeds"):
        chunked(verbose, COUNTER, 2000)(
            [{"role": "user", "content": "hi"}], previous_summary=None, max_tokens=10
        )
