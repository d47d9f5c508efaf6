"""Hybrid (the default): a summary of the old part beside a recent verbatim window.

The verbatim window takes ``request.recent_share`` of the budget and the summary the rest, so
early facts keep real room however long the conversation grows. Under heavy compression (a
budget below ``FULL_SHARE_RATIO`` of the window) the verbatim share shrinks in proportion to
the budget, so the summary is never starved while a few recent turns take half the room.
"""

from __future__ import annotations

from strategies.base import CompressionRequest, CompressionResult
from strategies.folding import fold
from tokenwindow.messages import Message

NAME = "hybrid"
FULL_SHARE_RATIO = 0.25
"""Budget/window ratio from which the verbatim window gets all of ``recent_share``.

At a 10% budget the verbatim share is 0.4 x ``recent_share``; at 25% and above, all of it.
"""


def hybrid(messages: list[Message], request: CompressionRequest) -> CompressionResult:
    """Split the budget between a running summary and the most recent turns."""
    return fold(
        messages,
        request,
        recent_share=request.recent_share,
        strategy=NAME,
        full_share_ratio=FULL_SHARE_RATIO,
    )
