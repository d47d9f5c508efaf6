"""Counts against OpenAI's published numbers and against tiktoken on random and hostile text."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenwindow import counting
from tokenwindow.counting import (
    REPLY_PRIMING,
    TokenCounter,
    count_request,
    counter_for_encoding,
    get_encoding,
)
from tokenwindow.errors import InvalidInputError, UnknownModelError

ENCODINGS = ("cl100k_base", "o200k_base")

# openai-cookbook, "How to count tokens with tiktoken": prompt_tokens reported by the API.
COOKBOOK_MESSAGES: list[Any] = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]
COOKBOOK_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
COOKBOOK_TOOL_MESSAGES: list[Any] = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo", 129), ("gpt-4", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)],
)
def test_cookbook_messages_match_published_counts(model: str, expected: int) -> None:
    details = count_request(model, messages=COOKBOOK_MESSAGES)
    assert details["tokens"] == expected
    assert details["exact"] is True


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_cookbook_tools_match_published_counts(model: str, expected: int) -> None:
    details = count_request(model, messages=COOKBOOK_TOOL_MESSAGES, tools=COOKBOOK_TOOLS)
    assert details["tokens"] == expected


def _reference(encoding: str, messages: list[Any]) -> int:
    """The cookbook's accounting, written out with tiktoken directly."""
    enc = get_encoding(encoding)
    total = REPLY_PRIMING
    for message in messages:
        total += 3
        for key, value in message.items():
            total += len(enc.encode(value, disallowed_special=()))
            total += 1 if key == "name" else 0
    return total


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_count_messages_equals_cookbook_reference(encoding: str) -> None:
    counter = TokenCounter(encoding)
    assert counter.count_messages(COOKBOOK_MESSAGES) == _reference(encoding, COOKBOOK_MESSAGES)


@settings(max_examples=150, deadline=None)
@given(text=st.text(), encoding=st.sampled_from(ENCODINGS))
def test_count_text_equals_tiktoken_on_random_text(text: str, encoding: str) -> None:
    expected = len(get_encoding(encoding).encode(text, disallowed_special=()))
    assert counter_for_encoding(encoding).count_text(text) == expected


HOSTILE_ALPHABET = st.sampled_from(
    [
        " ",
        "  ",
        "\t",
        "\n",
        "\r\n",
        "\u00a0",
        "\u3000",
        "\x1c",
        "a",
        "A",
        "1",
        "!",
        "'s",
        "/",
        "e\u0301",
        "中",
        "😀",
        "<|endoftext|>",
        "<|im_start|>",
        "word",
        "Hello",
        "123456",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    pieces=st.lists(HOSTILE_ALPHABET, max_size=60).map("".join),
    encoding=st.sampled_from(ENCODINGS),
)
def test_whitespace_guard_counts_like_tiktoken(pieces: str, encoding: str) -> None:
    """With the guard forced on every whitespace pair, counts still equal tiktoken's."""
    expected = len(get_encoding(encoding).encode(pieces, disallowed_special=()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(counting, "LONG_WHITESPACE", 2)
        patch.setattr(counting, "_LONG_RUN", counting.re.compile(r"\s{2,}"))
        assert TokenCounter(encoding).count_text(pieces) == expected


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "text",
    [
        "a" * 1_000_000,
        "😀" * 250_000,
        "中文字符" * 250_000,
        "<|endoftext|>" * 50_000,
        "ab " * 300_000,
    ],
    ids=["repeat", "emoji", "cjk", "special", "words"],
)
def test_hostile_text_counts_like_tiktoken(encoding: str, text: str) -> None:
    expected = len(get_encoding(encoding).encode_ordinary(text))
    assert counter_for_encoding(encoding).count_text(text) == expected


def test_long_space_run_matches_tiktoken_where_tiktoken_copes() -> None:
    text = "x" + " " * 1_000_000 + "\n\n" + " " * 10_000 + "y"
    expected = len(get_encoding("cl100k_base").encode_ordinary(text))
    assert counter_for_encoding("cl100k_base").count_text(text) == expected


@pytest.mark.parametrize("text", [" " * 1_000_000 + "x", "a" + "\t " * 500_000 + "1"])
def test_long_whitespace_run_does_not_crash_o200k(text: str) -> None:
    """tiktoken 0.14 panics on these; the count equals its own Python-side splitting."""
    enc = get_encoding("o200k_base")
    assert counter_for_encoding("o200k_base").count_text(text) == len(
        enc._encode_only_native_bpe(text)
    )


def test_special_token_text_is_ordinary_text() -> None:
    details = count_request("gpt-4o", messages=[{"role": "user", "content": "<|endoftext|>"}])
    assert details["tokens"] > 3 + 1 + 1 + REPLY_PRIMING


def test_count_message_is_independent_of_key_order_and_identity() -> None:
    counter = TokenCounter("o200k_base")
    message: Any = {"role": "user", "name": "ann", "content": "the same words"}
    reordered: Any = {"content": "the same words", "name": "ann", "role": "user"}
    first = counter.count_message(message)
    assert counter.count_message(copy.deepcopy(message)) == first
    assert counter.count_message(reordered) == first
    assert counter.count_message({**message, "name": "bob"}) == first
    assert counter.count_message({**message, "name": "a longer name"}) != first


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(max_size=600),
    role=st.sampled_from(["user", "assistant", "system"]),
    name=st.none() | st.text(min_size=1, max_size=20),
    encoding=st.sampled_from(ENCODINGS),
)
def test_plain_messages_count_like_the_cookbook_cold_and_cached(
    text: str, role: str, name: str | None, encoding: str
) -> None:
    message: Any = {"role": role, "content": text}
    if name is not None:
        message["name"] = name
    counter = TokenCounter(encoding)
    expected = _reference(encoding, [message]) - REPLY_PRIMING
    assert counter.count_message(message) == expected
    assert counter.count_message(copy.deepcopy(message)) == expected
    assert counter.count_messages([message, message]) == 2 * expected + REPLY_PRIMING


def test_a_text_never_shares_a_cache_entry_with_a_message() -> None:
    """A long text equal to another message's key JSON is still counted as that text."""
    counter = TokenCounter("o200k_base")
    enc = get_encoding("o200k_base")
    other: Any = {"role": "user", "content": [{"type": "text", "text": "x " * 200}]}
    blob = counting.json.dumps(other, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    as_text: Any = {"role": "user", "content": blob}
    first, second = counter.count_message(other), counter.count_message(as_text)
    assert second == 3 + 1 + len(enc.encode_ordinary(blob))
    assert counter.count_message(other) == first


def test_cache_keeps_role_and_content_apart() -> None:
    counter = TokenCounter("o200k_base")
    a: Any = {"role": "user", "content": "assistant"}
    b: Any = {"role": "assistant", "content": "user"}
    assert counter.count_message(a) == counter.count_message(b) == 3 + 1 + 1
    c: Any = {"role": "user", "content": "hello world, this is longer"}
    assert counter.count_message(c) > counter.count_message(a)


def test_tool_calls_and_tool_results_are_counted() -> None:
    counter = TokenCounter("o200k_base")
    enc = get_encoding("o200k_base")
    call: Any = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    expected = 3 + 1 + 3 + len(enc.encode("get_weather")) + len(enc.encode('{"city": "Paris"}'))
    assert counter.count_message(call) == expected
    result: Any = {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees"}
    assert counter.count_message(result) == 3 + 1 + len(enc.encode("21 degrees"))


def test_content_parts_count_text_and_images() -> None:
    counter = TokenCounter("o200k_base")
    text_only: Any = {"role": "user", "content": "look at this"}
    with_image: Any = {
        "role": "user",
        "content": [
            {"type": "text", "text": "look at this"},
            {
                "type": "image_url",
                "image_url": {"url": "https://example.com/a.png", "detail": "low"},
            },
        ],
    }
    assert counter.count_message(with_image) == counter.count_message(text_only) + 85


def test_opaque_parts_make_the_count_an_estimate() -> None:
    audio: Any = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    details = count_request("gpt-4o", messages=[{"role": "user", "content": [audio]}])
    assert details["exact"] is False


def test_system_newline_padding_with_tools() -> None:
    """A system message ending in a token that merges with a newline shifts the tools count."""
    counter = TokenCounter("o200k_base")
    plain: Any = [{"role": "user", "content": "hi"}]
    with_system: Any = [{"role": "system", "content": "Be brief."}, *plain]
    extra_plain = counter.count_messages(plain, COOKBOOK_TOOLS) - counter.count_messages(plain)
    extra_system = counter.count_messages(with_system, COOKBOOK_TOOLS) - counter.count_messages(
        with_system
    )
    padding = counter.count_text("Be brief.\n") - counter.count_text("Be brief.")
    assert extra_system == extra_plain - 4 + padding


def test_tool_counts_from_the_cache_match_a_fresh_count_for_each_schema_set() -> None:
    """An agent's tools are counted from the counter's cache after the first turn: a schema
    set that differs by one word must never get another set's count."""
    shared = TokenCounter("o200k_base")
    longer = copy.deepcopy(COOKBOOK_TOOLS)
    longer[0]["function"]["description"] += " Answers in Celsius unless asked otherwise."
    for tools in (COOKBOOK_TOOLS, longer, COOKBOOK_TOOLS, longer):
        assert shared.count_tools(tools) == TokenCounter("o200k_base").count_tools(tools)
    assert shared.count_tools(longer) > shared.count_tools(COOKBOOK_TOOLS)


def test_count_request_details() -> None:
    details = count_request("claude-3-5-sonnet", text="hello world")
    assert details == {
        "model": "claude-3-5-sonnet",
        "tokens": 2,
        "exact": False,
        "method": "estimate:o200k_base",
        "encoding": "o200k_base",
        "max_input_tokens": 200_000,
        "max_output_tokens": 8_192,
    }


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "exactly one of text or messages"),
        ({"text": "a", "messages": []}, "exactly one of text or messages"),
        ({"text": ""}, "text: must not be empty"),
        ({"messages": []}, "messages: must not be empty"),
        ({"messages": [{"content": "x"}]}, "messages[0].role: is missing"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"text": "a", "tools": COOKBOOK_TOOLS}, "tools: only allowed with messages"),
        ({"messages": COOKBOOK_TOOL_MESSAGES, "tools": {"x": 1}}, "tools: must be a list"),
        ({"messages": COOKBOOK_TOOL_MESSAGES, "tools": [{"function": {}}]}, "tools[0].function"),
    ],
)
def test_bad_input_names_the_problem(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        count_request("gpt-4o", **kwargs)
    assert needle in str(info.value)


def test_unknown_model_names_close_ones() -> None:
    with pytest.raises(UnknownModelError) as info:
        count_request("gpt-4oo", text="x")
    assert "gpt-4o" in info.value.suggestions
