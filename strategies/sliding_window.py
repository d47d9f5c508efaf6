"""Sliding window: the system messages plus the most recent messages that fit.

No summarizer and no model: the baseline, and the first step of the failsafe. A running summary
already in the window is kept while it fits, since it is all that is left of older turns.
"""

from __future__ import annotations

from strategies.assemble import build, prefix_indices, unchanged
from strategies.base import CompressionRequest, CompressionResult
from strategies.layout import Layout, layout, recent_cut
from tokenwindow.counting import REPLY_PRIMING
from tokenwindow.messages import Message

NAME = "sliding_window"


def slide(lay: Layout, request: CompressionRequest, strategy: str) -> CompressionResult:
    """Keep the newest units that fit; the caller has checked the layout's floor."""
    available = request.budget - REPLY_PRIMING - lay.system_tokens
    keep_summary = (
        lay.summary_index is not None
        and lay.cost(lay.units[lay.mandatory :]) + lay.summary_tokens <= available
    )
    if keep_summary:
        available -= lay.summary_tokens
    cut = recent_cut(lay, available, request.provider)
    dropped = prefix_indices(lay, cut)
    if lay.summary_index is not None and not keep_summary:
        dropped.append(lay.summary_index)
    summary = None
    if keep_summary and lay.summary_index is not None:
        summary = lay.messages[lay.summary_index]
    return build(
        lay,
        cut,
        request.counter,
        strategy=strategy,
        summary=summary,
        summarized=[],
        dropped=dropped,
    )


def sliding_window(messages: list[Message], request: CompressionRequest) -> CompressionResult:
    """Drop the oldest turns until the window fits ``request.budget``."""
    lay = layout(messages, request.counter)
    if lay.total <= request.budget:
        return unchanged(lay, NAME)
    lay.check_floor(request.budget)
    return slide(lay, request, NAME)
