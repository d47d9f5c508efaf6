"""The emergency failsafe: deterministic, no model, linear, and the result always fits.

Used when a strategy fails or runs out of time. It keeps what the sliding window keeps; when
even the system messages and the newest turn exceed the budget it cuts the middle of the
largest messages (the newest turn's first, then system messages) and flags the result.
"""

from __future__ import annotations

from strategies.assemble import build, prefix_indices, unchanged
from strategies.base import CompressionRequest, CompressionResult
from strategies.layout import Layout, layout
from strategies.sliding_window import slide
from strategies.truncate import cut_middle
from tokenwindow.counting import REPLY_PRIMING
from tokenwindow.errors import BudgetError
from tokenwindow.messages import Message, is_system

NAME = "failsafe"


def _truncated(lay: Layout, request: CompressionRequest) -> CompressionResult:
    dropped = prefix_indices(lay, lay.mandatory)
    if lay.summary_index is not None:
        dropped.append(lay.summary_index)
    result = build(
        lay,
        lay.mandatory,
        request.counter,
        strategy=NAME,
        summary=None,
        summarized=[],
        dropped=dropped,
    )
    counter = request.counter
    messages = result.messages
    counts = [counter.count_message(m) for m in messages]
    # The newest turn gives way before system messages; within each, the largest first.
    order = sorted(range(len(messages)), key=lambda k: (is_system(messages[k]), -counts[k]))
    excess = REPLY_PRIMING + sum(counts) - request.budget
    for k in order:
        if excess <= 0:
            break
        cut = cut_middle(messages[k], counts[k] - excess, counter)
        if cut is None:
            continue
        size = counter.count_message(cut)
        excess -= counts[k] - size
        messages[k], counts[k] = cut, size
    if excess > 0:
        raise BudgetError(
            f"budget {request.budget} is too small for any window: even with every message "
            f"cut down it needs {request.budget + excess} tokens"
        )
    result.tokens_after = REPLY_PRIMING + sum(counts)
    result.truncated = True
    return result


def failsafe(messages: list[Message], request: CompressionRequest) -> CompressionResult:
    """Make ``messages`` fit ``request.budget`` without any model; flag what it had to do."""
    lay = layout(messages, request.counter)
    if lay.total <= request.budget:
        result = unchanged(lay, NAME)
    elif request.budget >= lay.floor():
        result = slide(lay, request, NAME)
    else:
        result = _truncated(lay, request)
    result.failsafe = True
    return result
