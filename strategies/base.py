"""What every compression strategy takes and returns.

A strategy is a pure function of (messages, budget, counter, summarizer): no Redis, no network.
The working window it compresses has the shape
``[system messages..., running summary?, verbatim messages...]``; it returns a window of the
same shape, so the session store can persist just (summary text, index of the first verbatim
message kept) and never rewrite the raw transcript.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from tokenwindow.counting import TokenCounter
from tokenwindow.messages import Message

SUMMARY_NAME = "conversation_summary"
"""The ``name`` that marks the running summary message (a system message)."""
SUMMARY_HEADER = "Summary of the earlier conversation:"


class Summarizer(Protocol):
    """Turns a span of messages into summary text of at most ``max_tokens`` tokens.

    ``previous_summary`` is the running summary being folded in. Raise ``SummarizerError``
    (or anything) on failure: the strategy then returns its input unchanged.
    """

    def __call__(
        self, messages: list[Message], *, previous_summary: str | None, max_tokens: int
    ) -> str: ...


@dataclass(frozen=True)
class ClearingPolicy:
    """Tool-result clearing (``strategies.clearing``): what it always leaves whole."""

    keep_recent: int = 3
    """Newest tool results (messages with role ``tool``) never cleared."""
    clear_at_least: int = 0
    """Once clearing, remove at least this many tokens (if there is that much to clear)."""


@dataclass(frozen=True)
class CompressionRequest:
    """Everything a strategy needs besides the messages."""

    budget: int
    """Upper bound for ``counter.count_messages(result.messages)``."""
    counter: TokenCounter
    summarizer: Summarizer | None = None
    recent_share: float = 0.5
    """Hybrid: share of the budget given to verbatim recent messages (less under heavy
    compression, see ``strategies.hybrid``)."""
    provider: str = "openai"
    """Target provider; the result must be a valid request for it (e.g. Anthropic rules)."""
    interrupts: tuple[type[BaseException], ...] = ()
    """Exceptions a summarizer may raise that are not its failure but the caller's (a task's
    time limit): they pass through instead of being reported as a failed summary."""
    clearing: ClearingPolicy | None = None
    """Clear old tool results before the strategy runs; ``None`` leaves them whole."""


@dataclass
class CompressionResult:
    """What a strategy did, in terms callers can persist, report and audit."""

    messages: list[Message]
    strategy: str
    tokens_before: int
    tokens_after: int
    summary: str | None = None
    """Running summary text now in the window (new or carried over), if any."""
    kept_from: int = 0
    """Index in the *input* of the first non-system message kept verbatim."""
    summarized: list[tuple[int, int]] = field(default_factory=list)
    """Half-open index ranges of the input folded into the summary."""
    dropped: list[tuple[int, int]] = field(default_factory=list)
    """Half-open index ranges of the input removed without a summary."""
    failsafe: bool = False
    truncated: bool = False
    """The newest message alone exceeded the budget and its middle was cut."""
    tool_results_cleared: int = 0
    """Tool results in the window replaced by a placeholder (see ``strategies.clearing``)."""
    tool_tokens_cleared: int = 0
    """Tokens those placeholders saved."""
    error: str | None = None
    """Why compression could not be done (input returned unchanged), e.g. summarizer failure."""

    @property
    def tokens_saved(self) -> int:
        return self.tokens_before - self.tokens_after

    @property
    def ok(self) -> bool:
        return self.error is None and self.tokens_after <= self.tokens_before


class Strategy(Protocol):
    """A compression strategy: raises ``InvalidInputError``/``BudgetError`` on bad input."""

    def __call__(
        self, messages: list[Message], request: CompressionRequest
    ) -> CompressionResult: ...
