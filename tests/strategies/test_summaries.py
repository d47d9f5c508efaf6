"""Running summaries: folded, never piled up, never made of failures."""

from __future__ import annotations

import pytest

from strategies import compress
from strategies.base import SUMMARY_HEADER, SUMMARY_NAME, CompressionRequest
from strategies.hybrid import FULL_SHARE_RATIO
from tokenwindow.counting import counter_for_encoding
from tokenwindow.messages import Message

COUNTER = counter_for_encoding("o200k_base")
HISTORY: list[Message] = [
    {"role": "system", "content": "You plan trips."},
    *[
        {"role": "user" if k % 2 == 0 else "assistant", "content": f"Note {k}: " + "detail " * 60}
        for k in range(12)
    ],
]


class Recording:
    """A summarizer that records what it was given and answers with a fixed text."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.calls: list[tuple[list[Message], str | None, int]] = []

    def __call__(
        self, messages: list[Message], *, previous_summary: str | None, max_tokens: int
    ) -> str:
        self.calls.append((messages, previous_summary, max_tokens))
        return self.reply


def test_the_previous_summary_is_folded_into_the_next() -> None:
    first = Recording("Trip to Lisbon on 3 May, budget 900 euros.")
    request = CompressionRequest(budget=500, counter=COUNTER, summarizer=first)
    once = compress(HISTORY, "hybrid", request)
    assert once.summary == first.reply
    assert once.messages[1] == {
        "role": "system",
        "name": SUMMARY_NAME,
        "content": f"{SUMMARY_HEADER}\n{first.reply}",
    }
    more = once.messages + [
        {"role": "assistant" if k % 2 == 0 else "user", "content": "later " * 80} for k in range(5)
    ]
    second = Recording("Lisbon 3 May, 900 euros; hotel booked.")
    twice = compress(
        more, "hybrid", CompressionRequest(budget=500, counter=COUNTER, summarizer=second)
    )
    ((span, previous, max_tokens),) = second.calls
    assert previous == first.reply
    assert all(m.get("name") != SUMMARY_NAME for m in span)
    assert [m.get("name") for m in twice.messages].count(SUMMARY_NAME) == 1
    assert twice.summary == second.reply
    assert twice.summarized[0][0] == 1  # the previous summary went into the new one
    assert max_tokens > 0


@pytest.mark.parametrize("reply", ["", "   ", "word " * 5000])
def test_an_empty_or_oversized_summary_changes_nothing(reply: str) -> None:
    request = CompressionRequest(budget=500, counter=COUNTER, summarizer=Recording(reply))
    result = compress(HISTORY, "summarization", request)
    assert result.messages == HISTORY
    assert result.error is not None and result.error.startswith("summarizer failed")


def test_without_a_summarizer_the_extractive_one_is_used() -> None:
    result = compress(HISTORY, "hybrid", CompressionRequest(budget=500, counter=COUNTER))
    assert result.error is None
    assert result.summary is not None and "Note" in result.summary
    assert result.tokens_after <= 500


LONG: list[Message] = [
    {"role": "user" if k % 2 == 0 else "assistant", "content": f"Note {k}: " + "detail " * 20}
    for k in range(80)
]


def _verbatim_tokens(budget: int) -> int:
    result = compress(LONG, "hybrid", CompressionRequest(budget=budget, counter=COUNTER))
    assert result.error is None and result.tokens_after <= budget
    return sum(COUNTER.count_message(m) for m in LONG[result.kept_from :])


def test_hybrid_shrinks_the_verbatim_share_under_heavy_compression() -> None:
    light = int(COUNTER.count_messages(LONG) * FULL_SHARE_RATIO)
    heavy = light // 2
    # At the reference ratio the suffix may use half the budget; at half of it, a quarter.
    assert _verbatim_tokens(light) > light // 4
    assert _verbatim_tokens(heavy) <= heavy // 4
