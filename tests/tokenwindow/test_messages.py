"""Message validation: every rejection names the index and the field."""

from __future__ import annotations

from typing import Any

import pytest

from tokenwindow.errors import InvalidInputError
from tokenwindow.messages import MAX_MESSAGE_CHARS, text_of, validate_messages

CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "hi"}],
        [{"role": "developer", "content": "rules"}, {"role": "user", "content": "hi", "name": "a"}],
        [{"role": "assistant", "content": None, "tool_calls": [CALL]}],
        [{"role": "tool", "tool_call_id": "c1", "content": "done"}],
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "image_url", "image_url": {"url": "https://x"}},
                ],
            }
        ],
    ],
)
def test_valid_messages_pass_unchanged(messages: list[Any]) -> None:
    assert validate_messages(messages) == messages


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ("hi", "messages: must be a list, got str"),
        ([], "messages: must not be empty"),
        (["hi"], "messages[0]: must be an object"),
        ([{"content": "x"}], "messages[0].role: is missing"),
        ([{"role": "bot", "content": "x"}], "messages[0].role: must be one of"),
        ([{"role": "user"}], "messages[0].content: is missing"),
        ([{"role": "user", "content": None}], "messages[0].content: may be null only"),
        ([{"role": "assistant", "content": None}], "has no tool_calls"),
        ([{"role": "user", "content": 3}], "messages[0].content: must be a string, got int"),
        ([{"role": "user", "content": "x", "extra": 1}], "messages[0].extra: is not an OpenAI"),
        ([{"role": "user", "content": "x", "name": 7}], "messages[0].name: must be a string"),
        ([{"role": "user", "content": [{"type": "video"}]}], "messages[0].content[0].type"),
        ([{"role": "user", "content": [{"type": "text", "text": 1}]}], "content[0].text"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": "u"}]}], "image_url"),
        ([{"role": "user", "content": "x", "tool_calls": [CALL]}], "only allowed on assistant"),
        ([{"role": "assistant", "content": "x", "tool_calls": []}], "non-empty list"),
        ([{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}], "tool_calls[0].id"),
        ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id: is required"),
        ([{"role": "user", "content": "a" * (MAX_MESSAGE_CHARS + 1)}], "the limit is"),
    ],
)
def test_invalid_messages_name_the_field(messages: object, needle: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        validate_messages(messages)
    assert needle in str(info.value)


def test_empty_list_allowed_when_asked() -> None:
    assert validate_messages([], allow_empty=True) == []


def test_text_of_joins_parts_and_calls() -> None:
    message: Any = {
        "role": "assistant",
        "content": [{"type": "text", "text": "a"}, {"type": "refusal", "refusal": "b"}],
        "tool_calls": [CALL],
    }
    assert text_of(message) == "a\nb\nf({})"
