"""Is a message list a request the target provider accepts?

Compression must never turn a valid conversation into a 400. Providers agree that every tool
result answers a call of the assistant message just before it and every call gets a result;
some (Anthropic and friends) also need the first turn after the system messages to be the
user's and user and assistant turns to alternate.
"""

from __future__ import annotations

from strategies.layout import STRICT_PROVIDERS
from tokenwindow.errors import InvalidInputError
from tokenwindow.messages import Message, is_system, tool_call_ids


def _tool_problems(messages: list[Message]) -> list[str]:
    problems = []
    pending: set[str] = set()
    for i, message in enumerate(messages):
        if message["role"] == "tool":
            call_id = message.get("tool_call_id", "")
            if call_id not in pending:
                problems.append(f"messages[{i}]: tool result {call_id!r} answers no open call")
            pending.discard(call_id)
            continue
        if pending:
            problems.append(f"messages[{i}]: tool calls {sorted(pending)} have no result")
        pending = set(tool_call_ids(message))
    if pending:
        problems.append(f"messages[{len(messages)}]: tool calls {sorted(pending)} have no result")
    return problems


def _turn_problems(messages: list[Message]) -> list[str]:
    problems = []
    previous = "system"
    for i, message in enumerate(messages):
        if is_system(message):
            if previous != "system":
                problems.append(f"messages[{i}]: system message after the conversation started")
            continue
        # A run of tool results is one user turn on these providers.
        turn = "user" if message["role"] in ("user", "tool") else "assistant"
        if previous == "system" and turn != "user":
            problems.append(f"messages[{i}]: the first turn must be the user's")
        elif turn == previous and message["role"] != "tool":
            problems.append(f"messages[{i}]: two {turn} turns in a row")
        previous = turn
    return problems


def problems(messages: list[Message], provider: str) -> list[str]:
    """Every reason ``provider`` would reject ``messages``; empty when it is valid."""
    if not any(not is_system(m) for m in messages):
        return ["messages: no user or assistant message"]
    found = _tool_problems(messages)
    if provider in STRICT_PROVIDERS:
        found += _turn_problems(messages)
    return found


def check(messages: list[Message], provider: str) -> None:
    """Raise ``InvalidInputError`` naming the first problem if ``provider`` would reject it."""
    found = problems(messages, provider)
    if found:
        raise InvalidInputError(f"not a valid {provider} request: {found[0]}")
