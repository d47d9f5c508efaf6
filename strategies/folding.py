"""Folding the oldest span (and the previous summary) into one new running summary.

Summarization and hybrid differ only in how much of the budget the verbatim suffix may take,
so both are this one procedure with a different share. All-or-nothing: any summarizer failure
or an unusable summary returns the input unchanged with ``error`` set, never a partial window.
"""

from __future__ import annotations

from strategies.assemble import build, prefix_indices, unchanged
from strategies.base import CompressionRequest, CompressionResult, Summarizer
from strategies.extractive import ExtractiveSummarizer
from strategies.layout import Layout, layout, recent_cut
from strategies.summary import summary_message
from tokenwindow.counting import REPLY_PRIMING
from tokenwindow.messages import Message

MIN_SUMMARY_TOKENS = 16
"""Below this a summary says nothing useful; the old span is dropped instead."""
SUMMARY_SLACK_TOKENS = 4
"""Headroom for the header and text merging into slightly different tokens than apart."""


def _summarize(
    lay: Layout,
    span: list[int],
    summarizer: Summarizer,
    max_tokens: int,
    interrupts: tuple[type[BaseException], ...],
) -> tuple[str | None, str | None]:
    """(summary text, None) or (None, reason it cannot be used)."""
    try:
        text = summarizer(
            [lay.messages[i] for i in span],
            previous_summary=lay.previous_summary,
            max_tokens=max_tokens,
        )
    except interrupts:
        raise
    except Exception as exc:  # any failure means no summary; the caller reports it
        return None, f"summarizer failed: {type(exc).__name__}: {exc}"
    if not isinstance(text, str) or not text.strip():
        return None, "summarizer failed: it returned an empty summary"
    return text.strip(), None


def fold(
    messages: list[Message],
    request: CompressionRequest,
    *,
    recent_share: float,
    strategy: str,
    full_share_ratio: float = 0.0,
) -> CompressionResult:
    """Keep a recent suffix worth ``recent_share`` of the budget; summarize everything older.

    When the budget is under ``full_share_ratio`` of the window's tokens, the share shrinks in
    proportion: a suffix at full share would leave the summary to squeeze the older part far
    harder than the window as a whole, and drop most early facts.
    """
    lay = layout(messages, request.counter)
    if lay.total <= request.budget:
        return unchanged(lay, strategy)
    lay.check_floor(request.budget)
    counter = request.counter
    ratio = request.budget / lay.total
    if ratio < full_share_ratio:
        recent_share *= ratio / full_share_ratio
    available = request.budget - REPLY_PRIMING - lay.system_tokens
    cut = recent_cut(lay, int(available * recent_share), request.provider)
    span = prefix_indices(lay, cut)
    folded = span + ([] if lay.summary_index is None else [lay.summary_index])
    room = available - lay.cost(lay.units[cut:])
    max_tokens = room - counter.count_message(summary_message("")) - SUMMARY_SLACK_TOKENS
    if max_tokens < MIN_SUMMARY_TOKENS:
        return build(
            lay, cut, counter, strategy=strategy, summary=None, summarized=[], dropped=folded
        )
    summarizer = request.summarizer or ExtractiveSummarizer(counter)
    text, error = _summarize(lay, span, summarizer, max_tokens, request.interrupts)
    if text is None:
        return unchanged(lay, strategy, error=error)
    summary = summary_message(text)
    size = counter.count_message(summary)
    if size > room:
        return unchanged(
            lay, strategy, error=f"summarizer failed: summary of {size} tokens exceeds {room}"
        )
    return build(
        lay, cut, counter, strategy=strategy, summary=summary, summarized=folded, dropped=[]
    )
