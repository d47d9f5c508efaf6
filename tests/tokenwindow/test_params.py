"""Chat parameters: what litellm supports per model passes, the rest is refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from tokenwindow.errors import InvalidInputError
from tokenwindow.models import BUILTIN_MODELS, ModelSpec
from tokenwindow.params import check_chat_params

MODELS = {spec.name: spec for spec in BUILTIN_MODELS}
GPT, CLAUDE, GEMINI = MODELS["gpt-4o"], MODELS["claude-3-5-sonnet"], MODELS["gemini-1.5-pro"]
OFFLINE = MODELS["tokenwindow-offline"]
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def refused(spec: ModelSpec, params: dict[str, Any]) -> str:
    with pytest.raises(InvalidInputError) as caught:
        check_chat_params(spec, params)
    return str(caught.value)


@pytest.mark.parametrize("spec", [GPT, CLAUDE, GEMINI], ids=lambda s: s.name)
def test_tool_calling_and_sampling_pass_for_every_provider(spec: ModelSpec) -> None:
    params = {
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": True,
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 256,
        "stop": ["END"],
        "response_format": {"type": "json_object"},
    }
    assert check_chat_params(spec, params) == params


def test_openai_only_parameters_pass_for_openai() -> None:
    params = {"seed": 7, "logit_bias": {"1234": -100}, "logprobs": True, "top_logprobs": 3}
    assert check_chat_params(GPT, params) == params


@pytest.mark.parametrize(
    ("spec", "name", "value"),
    [
        (CLAUDE, "logit_bias", {"1234": 5}),
        (CLAUDE, "seed", 1),
        (GEMINI, "logit_bias", {"1": 1}),
        (OFFLINE, "tools", [TOOL]),
        (GPT, "api_key", "sk-elsewhere"),
    ],
)
def test_unsupported_parameters_are_refused_naming_them(
    spec: ModelSpec, name: str, value: object
) -> None:
    message = refused(spec, {name: value})
    assert message == f"turn: parameter {name!r} is not supported by {spec.name}"


@pytest.mark.parametrize("name", ["messages", "model", "stream", "stream_options", "extra_headers"])
def test_what_the_service_sets_is_refused(name: str) -> None:
    assert f"parameter {name!r} is set by the service" in refused(GPT, {name: True})


def test_n_of_one_is_dropped_and_more_is_refused() -> None:
    assert check_chat_params(CLAUDE, {"n": 1, "temperature": 1}) == {"temperature": 1}
    assert "'n'" in refused(GPT, {"n": 2})


def test_none_values_are_left_out() -> None:
    assert check_chat_params(GPT, {"temperature": None, "max_tokens": 5}) == {"max_tokens": 5}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"temperature": 3}, "'temperature': must be between 0 and 2"),
        ({"temperature": "hot"}, "'temperature': must be a number"),
        ({"top_p": True}, "'top_p': must be a number"),
        ({"max_tokens": 0}, "'max_tokens': must be at least 1"),
        ({"max_tokens": 2.5}, "'max_tokens': must be an integer"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "'stop': must be a non-empty string or a list"),
        ({"stop": [""]}, "'stop'"),
        ({"seed": "x"}, "'seed': must be an integer"),
        ({"logit_bias": {"word": 1}}, "key 'word' is not a token id"),
        ({"logit_bias": {"12": 500}}, "between -100 and 100"),
        ({"parallel_tool_calls": "yes"}, "'parallel_tool_calls': must be true or false"),
        ({"response_format": {"type": "yaml"}}, "response_format'.type: must be one of"),
        ({"response_format": {"type": "json_schema"}}, "json_schema: must be an object"),
        ({"tools": []}, "'tools': must be a non-empty list"),
        ({"tools": [{"type": "retrieval"}]}, "[0].type: must be 'function'"),
        ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, "name: must be"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "[0].function.parameters: must be an object",
        ),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
                ]
            },
            "parameters.type: must be 'object'",
        ),
        ({"tools": [TOOL, TOOL]}, "'get_weather' is declared twice"),
        ({"tool_choice": "auto"}, "'auto' needs tools"),
        ({"tools": [TOOL], "tool_choice": "sometimes"}, "'tool_choice': must be one of"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}},
            "must name one of the declared tools, got 'other'",
        ),
    ],
)
def test_malformed_values_are_refused_naming_the_field(
    params: dict[str, Any], fragment: str
) -> None:
    assert fragment in refused(GPT, params)


def test_the_caller_names_where_the_parameters_came_from() -> None:
    with pytest.raises(InvalidInputError, match=r"^request: parameter 'seed'"):
        check_chat_params(CLAUDE, {"seed": 1}, where="request")
