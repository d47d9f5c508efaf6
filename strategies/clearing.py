"""Tool-result clearing: the cheap first tier, run before any strategy drops or summarizes.

Modelled on Anthropic's context editing (``clear_tool_uses``) and Claude Code: the oldest tool
results give way first, each replaced by a short placeholder naming the tool and the size
removed, while the last ``keep_recent`` results stay whole. Calls, their ids and every other
message stay where they are, so no call is left unanswered and no result loses its call.

Clearing goes only as far as the budget needs (oldest first), but at least ``clear_at_least``
tokens once it clears at all: the trigger is the caller's (the pipeline's soft and hard
thresholds), and clearing in batches keeps a provider's prompt cache valid for longer, as
Anthropic's ``clear_at_least`` does. When clearing alone is not enough, the strategy runs on the
cleared window, and its summarizer is handed the original of every cleared result (those it
summarizes and those left as placeholders), so a summary still holds their facts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from strategies.base import (
    ClearingPolicy,
    CompressionRequest,
    CompressionResult,
    Strategy,
    Summarizer,
)
from strategies.extractive import ExtractiveSummarizer
from strategies.layout import layout
from tokenwindow.counting import TokenCounter
from tokenwindow.messages import Message

PLACEHOLDER_PREFIX = "[tool result cleared: "


@dataclass(frozen=True)
class Cleared:
    """A window with old tool results replaced, and what that removed."""

    messages: list[Message]
    indices: list[int]
    """Input indices of the tool results now holding a placeholder."""
    tokens_removed: int


def placeholder(tool: str, tokens: int) -> str:
    """``[tool result cleared: get_weather, 1,480 tokens]``."""
    return f"{PLACEHOLDER_PREFIX}{tool}, {tokens:,} tokens]"


def _tool_names(messages: list[Message]) -> dict[str, str]:
    """Tool name of every call id, from the assistant messages that made the calls."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                names[str(call.get("id", ""))] = str(function.get("name", "tool"))
    return names


def _is_cleared(message: Message) -> bool:
    content = message.get("content")
    return isinstance(content, str) and content.startswith(PLACEHOLDER_PREFIX)


def clear_tool_results(
    messages: list[Message], *, budget: int, counter: TokenCounter, policy: ClearingPolicy
) -> Cleared:
    """Replace the oldest tool results until ``messages`` fit ``budget`` (pure: a new list).

    The newest ``policy.keep_recent`` tool results are never touched, so the result may still be
    over budget; the caller's strategy takes it from there.
    """
    excess = counter.count_messages(messages) - budget
    if excess <= 0:
        return Cleared(list(messages), [], 0)
    results = [i for i, m in enumerate(messages) if m["role"] == "tool"]
    eligible = results[: max(len(results) - policy.keep_recent, 0)]
    names = _tool_names(messages)
    target = max(excess, policy.clear_at_least)
    out = list(messages)
    cleared: list[int] = []
    removed = 0
    for i in eligible:
        if removed >= target:
            break
        original = messages[i]
        if _is_cleared(original):
            continue
        size = counter.count_message(original)
        tool = str(original.get("name") or names.get(original.get("tool_call_id", ""), "tool"))
        stub: Message = {**original, "content": placeholder(tool, size)}
        saved = size - counter.count_message(stub)
        if saved <= 0:
            continue
        out[i] = stub
        cleared.append(i)
        removed += saved
    return Cleared(out, cleared, removed)


class _OriginalsSummarizer:
    """Hands the summarizer the original tool results in place of their placeholders.

    Results cleared in the verbatim part that stays are appended after the span, in order: a
    summary is being written anyway, so it may as well keep their facts too.
    """

    def __init__(self, inner: Summarizer, originals: dict[int, Message]) -> None:
        self.inner = inner
        self.originals = originals

    def __call__(
        self, messages: list[Message], *, previous_summary: str | None, max_tokens: int
    ) -> str:
        passed = {id(m) for m in messages}
        restored = [self.originals.get(id(m), m) for m in messages]
        restored += [m for key, m in self.originals.items() if key not in passed]
        return self.inner(restored, previous_summary=previous_summary, max_tokens=max_tokens)


def _kept(indices: list[int], result: CompressionResult) -> list[int]:
    """The cleared indices still in the result's window (not summarized or dropped later)."""
    gone = {i for start, end in result.summarized + result.dropped for i in range(start, end)}
    return [i for i in indices if i not in gone]


def with_clearing(
    strategy: Strategy, messages: list[Message], request: CompressionRequest, policy: ClearingPolicy
) -> CompressionResult:
    """Clear old tool results, then run ``strategy`` on what is left if it is still over.

    All-or-nothing like every strategy: if the strategy reports an error, the input comes back
    unchanged and nothing is reported cleared.
    """
    counter = request.counter
    cleared = clear_tool_results(messages, budget=request.budget, counter=counter, policy=policy)
    if not cleared.indices:
        return strategy(messages, request)
    originals = {id(cleared.messages[i]): messages[i] for i in cleared.indices}
    summarizer = request.summarizer or ExtractiveSummarizer(counter)
    inner = replace(request, summarizer=_OriginalsSummarizer(summarizer, originals))
    result = strategy(cleared.messages, inner)
    total = counter.count_messages(messages)
    if result.error is not None:
        return replace(result, messages=list(messages), tokens_before=total, tokens_after=total)
    kept = _kept(cleared.indices, result)
    removed = sum(
        counter.count_message(messages[i]) - counter.count_message(cleared.messages[i])
        for i in kept
    )
    return replace(
        result, tokens_before=total, tool_results_cleared=len(kept), tool_tokens_cleared=removed
    )


def floor_after_clearing(
    messages: list[Message], counter: TokenCounter, policy: ClearingPolicy | None
) -> int:
    """The fewest tokens any strategy reaches without cutting a message.

    System messages and the newest user turn, with every tool result but the newest
    ``keep_recent`` cleared. A model window below this needs the failsafe's cut, or a larger
    model (``tokenwindow.window.context_fallback``).
    """
    if policy is not None:
        messages = clear_tool_results(messages, budget=0, counter=counter, policy=policy).messages
    return layout(messages, counter).floor()
