"""Turning a chosen cut into a result, the same way for every strategy.

One builder means every strategy reports ranges, counts and ``kept_from`` identically, and
the window shape ``[system..., summary?, verbatim suffix...]`` is produced in one place.
"""

from __future__ import annotations

from strategies.base import CompressionResult
from strategies.layout import Layout, index_ranges
from strategies.summary import parse_summary
from tokenwindow.counting import REPLY_PRIMING, TokenCounter
from tokenwindow.messages import Message


def unchanged(lay: Layout, strategy: str, *, error: str | None = None) -> CompressionResult:
    """The input as it came, e.g. already under budget or after a summarizer failure."""
    return CompressionResult(
        messages=list(lay.messages),
        strategy=strategy,
        tokens_before=lay.total,
        tokens_after=lay.total,
        summary=lay.previous_summary,
        kept_from=lay.units[0].start if lay.units else len(lay.messages),
        error=error,
    )


def prefix_indices(lay: Layout, cut: int) -> list[int]:
    """Input indices of the non-system messages before unit ``cut``."""
    return [i for u in lay.units[:cut] if not u.system for i in range(u.start, u.end)]


def build(
    lay: Layout,
    cut: int,
    counter: TokenCounter,
    *,
    strategy: str,
    summary: Message | None,
    summarized: list[int],
    dropped: list[int],
) -> CompressionResult:
    """The window: head systems, systems hoisted from the prefix, ``summary``, then the suffix."""
    hoisted = [u.start for u in lay.units[:cut] if u.system]
    kept = lay.head + hoisted
    suffix = [i for u in lay.units[cut:] for i in range(u.start, u.end)]
    messages = [lay.messages[i] for i in kept]
    tokens = REPLY_PRIMING + sum(lay.counts[i] for i in kept + suffix)
    if summary is not None:
        messages.append(summary)
        tokens += counter.count_message(summary)
    messages.extend(lay.messages[i] for i in suffix)
    return CompressionResult(
        messages=messages,
        strategy=strategy,
        tokens_before=lay.total,
        tokens_after=tokens,
        summary=None if summary is None else parse_summary(summary),
        kept_from=lay.units[cut].start if cut < len(lay.units) else len(lay.messages),
        summarized=index_ranges(summarized),
        dropped=index_ranges(dropped),
    )
