"""Summarization: fold the oldest span into the running summary, keep recent turns verbatim.

It summarizes only what must go: the verbatim suffix may use most of the budget, leaving the
summary a fixed share.
"""

from __future__ import annotations

from strategies.base import CompressionRequest, CompressionResult
from strategies.folding import fold
from tokenwindow.messages import Message

NAME = "summarization"
VERBATIM_SHARE = 0.8
"""Share of the budget (after system messages) the verbatim suffix may use."""


def summarization(messages: list[Message], request: CompressionRequest) -> CompressionResult:
    """Summarize the oldest span, keeping as many recent turns as leave room for the summary."""
    return fold(messages, request, recent_share=VERBATIM_SHARE, strategy=NAME)
