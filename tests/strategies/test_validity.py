"""What each provider accepts."""

from __future__ import annotations

import pytest

from strategies.validity import check, problems
from tokenwindow.errors import InvalidInputError
from tokenwindow.messages import Message

CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
WITH_TOOLS: list[Message] = [
    {"role": "system", "content": "s"},
    {"role": "user", "content": "u"},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},  # type: ignore[list-item]
    {"role": "tool", "tool_call_id": "c1", "content": "r"},
    {"role": "assistant", "content": "a"},
]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_complete_exchange_is_valid(provider: str) -> None:
    check(WITH_TOOLS, provider)


def test_a_call_without_its_result_is_invalid_everywhere() -> None:
    assert problems(WITH_TOOLS[:3], "openai") == ["messages[3]: tool calls ['c1'] have no result"]


def test_a_result_without_its_call_is_invalid() -> None:
    with pytest.raises(InvalidInputError, match="answers no open call"):
        check([WITH_TOOLS[1], WITH_TOOLS[3]], "openai")


def test_anthropic_needs_the_user_first_and_alternation() -> None:
    assistant_first: list[Message] = [
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "u"},
    ]
    assert problems(assistant_first, "openai") == []
    assert problems(assistant_first, "anthropic") == [
        "messages[0]: the first turn must be the user's"
    ]
    twice: list[Message] = [{"role": "user", "content": "u"}, {"role": "user", "content": "v"}]
    assert problems(twice, "anthropic") == ["messages[1]: two user turns in a row"]


def test_only_system_messages_are_not_a_request() -> None:
    assert problems([{"role": "system", "content": "s"}], "openai")
