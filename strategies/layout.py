"""The working window cut into the pieces every strategy reasons about.

Counting each message once here, and grouping tool calls with their results into atomic units,
is what keeps strategies linear and keeps them from ever splitting a call from its result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from strategies.summary import parse_summary
from tokenwindow.counting import REPLY_PRIMING, TokenCounter
from tokenwindow.errors import BudgetError, InvalidInputError
from tokenwindow.messages import Message, is_system, tool_call_ids

STRICT_PROVIDERS: frozenset[str] = frozenset(("anthropic", "bedrock", "gemini", "vertex_ai"))
"""Providers that require the first non-system message to be a user turn."""


@dataclass(frozen=True)
class Unit:
    """Messages that must be kept or removed together: one message, or a call and its results."""

    start: int
    end: int
    tokens: int
    system: bool
    """A mid-conversation system message: always kept, so it costs nothing when choosing."""
    opens_turn: bool
    """Starts with a user message, so a strict provider accepts the window starting here."""


@dataclass(frozen=True)
class Layout:
    """``[system..., running summary?, body units...]`` with every message counted once."""

    messages: list[Message]
    counts: list[int]
    head: list[int]
    """Leading system messages (not the running summary), kept first and in order."""
    summary_index: int | None
    previous_summary: str | None
    units: list[Unit]
    mandatory: int
    """Index of the unit holding the newest user message (or the last unit): kept always."""
    system_tokens: int
    """All system messages except the running summary; every strategy keeps them."""

    @property
    def total(self) -> int:
        return REPLY_PRIMING + sum(self.counts)

    @property
    def summary_tokens(self) -> int:
        return 0 if self.summary_index is None else self.counts[self.summary_index]

    def cost(self, units: Iterable[Unit]) -> int:
        """Tokens the units add beyond the always-kept system messages."""
        return sum(u.tokens for u in units if not u.system)

    def floor(self) -> int:
        """The smallest count any non-failsafe result can have."""
        return REPLY_PRIMING + self.system_tokens + self.cost(self.units[self.mandatory :])

    def check_floor(self, budget: int) -> None:
        if budget < self.floor():
            raise BudgetError(
                f"budget {budget} is below the {self.floor()} tokens needed for the system "
                "messages and the newest user turn; use the failsafe strategy"
            )


def _units(messages: list[Message], counts: list[int], body: list[int]) -> list[Unit]:
    units: list[Unit] = []
    open_calls: set[str] = set()
    for i in body:
        message = messages[i]
        if message["role"] == "tool":
            call_id = message.get("tool_call_id", "")
            if call_id not in open_calls:
                raise InvalidInputError(
                    f"messages[{i}].tool_call_id: {call_id!r} answers no tool call of the "
                    "assistant message just before it"
                )
            open_calls.discard(call_id)
            last = units[-1]
            units[-1] = Unit(last.start, i + 1, last.tokens + counts[i], False, last.opens_turn)
            continue
        open_calls = set(tool_call_ids(message))
        units.append(Unit(i, i + 1, counts[i], is_system(message), message["role"] == "user"))
    return units


def layout(messages: list[Message], counter: TokenCounter) -> Layout:
    """Split and count ``messages``; raise ``InvalidInputError`` if they cannot be compressed."""
    if not messages:
        raise InvalidInputError("messages: must not be empty")
    counts = [counter.count_message(m) for m in messages]
    summaries = [i for i, m in enumerate(messages) if parse_summary(m) is not None]
    if len(summaries) > 1:
        raise InvalidInputError(
            f"messages[{summaries[1]}]: a second running summary; a window holds at most one"
        )
    summary_index = summaries[0] if summaries else None
    head_end = 0
    while head_end < len(messages) and is_system(messages[head_end]):
        head_end += 1
    body = [i for i in range(head_end, len(messages)) if i != summary_index]
    units = _units(messages, counts, body)
    users = [k for k, u in enumerate(units) if messages[u.start]["role"] == "user"]
    non_system = [k for k, u in enumerate(units) if not u.system]
    mandatory = users[-1] if users else (non_system[-1] if non_system else len(units))
    system_tokens = sum(
        c for i, c in enumerate(counts) if i != summary_index and is_system(messages[i])
    )
    return Layout(
        messages=messages,
        counts=counts,
        head=[i for i in range(head_end) if i != summary_index],
        summary_index=summary_index,
        previous_summary=None if summary_index is None else parse_summary(messages[summary_index]),
        units=units,
        mandatory=mandatory,
        system_tokens=system_tokens,
    )


def recent_cut(lay: Layout, limit: int, provider: str) -> int:
    """Index of the first unit of the longest recent suffix costing at most ``limit``.

    The suffix always reaches back to the mandatory unit, even past ``limit`` (callers check
    the floor), and starts where the provider accepts a window to start.
    """
    strict = provider in STRICT_PROVIDERS
    cut = lay.mandatory
    cost = lay.cost(lay.units[cut:])
    k = cut - 1
    while k >= 0:
        unit = lay.units[k]
        extra = 0 if unit.system else unit.tokens
        if cost + extra > limit:
            break
        cost += extra
        if unit.opens_turn or not strict:
            cut = k
        k -= 1
    return cut


def index_ranges(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted indices as half-open ``(start, end)`` runs."""
    ranges: list[tuple[int, int]] = []
    for i in sorted(indices):
        if ranges and ranges[-1][1] == i:
            ranges[-1] = (ranges[-1][0], i + 1)
        else:
            ranges.append((i, i + 1))
    return ranges
