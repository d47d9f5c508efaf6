"""Hybrid (the default): a summary of the old part beside a recent verbatim window.

The verbatim window takes ``request.recent_share`` of the budget and the summary the rest, so
early facts keep real room however long the conversation grows.
"""

from __future__ import annotations

from strategies.base import CompressionRequest, CompressionResult
from strategies.folding import fold
from tokenwindow.messages import Message

NAME = "hybrid"


def hybrid(messages: list[Message], request: CompressionRequest) -> CompressionResult:
    """Split the budget between a running summary and the most recent turns."""
    return fold(messages, request, recent_share=request.recent_share, strategy=NAME)
