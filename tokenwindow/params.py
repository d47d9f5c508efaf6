"""Chat parameters a turn may carry: what litellm supports for the model, checked for shape.

A parameter is never dropped silently: one the model's provider does not take (per
``litellm.get_supported_openai_params``, a table lookup with no network) or one with a
malformed value raises ``InvalidInputError`` naming it, before anything is queued or sent.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from tokenwindow.errors import InvalidInputError
from tokenwindow.models import ModelSpec
from tokenwindow.offline import prepare_offline_environment

OWNED_BY_THE_SERVICE = frozenset(
    ("messages", "model", "stream", "stream_options", "extra_headers", "max_retries")
)
"""Set by the service for every call (or transport settings), never by a caller."""
BASIC_PARAMS = frozenset(("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop"))
"""Accepted for custom providers litellm has no parameter table for (the offline model)."""
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
"""OpenAI's rule for function names; Anthropic and Gemini accept the same alphabet."""
TOOL_CHOICES = frozenset(("none", "auto", "required"))
RESPONSE_FORMATS = frozenset(("text", "json_object", "json_schema"))
MAX_STOP_SEQUENCES = 4


@functools.lru_cache(maxsize=1024)
def supported_params(litellm_model: str) -> frozenset[str]:
    """The OpenAI parameters litellm maps for this model (``provider/model`` name)."""
    prepare_offline_environment()
    import litellm
    from litellm.types.utils import LlmProviders

    provider, _, model = litellm_model.partition("/")
    if provider not in LlmProviders._value2member_map_:
        # A custom handler: once called, litellm answers with OpenAI's whole list for it.
        return BASIC_PARAMS
    supported = litellm.get_supported_openai_params(model=model, custom_llm_provider=provider)
    return frozenset(supported) if supported is not None else BASIC_PARAMS


# --- value checks ----------------------------------------------------------------------------
def _number(low: float, high: float) -> Callable[[str, object], None]:
    def check(where: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise InvalidInputError(f"{where}: must be a number, got {value!r}")
        if not low <= value <= high:
            raise InvalidInputError(f"{where}: must be between {low:g} and {high:g}, got {value}")

    return check


def _integer(low: int, high: int | None = None) -> Callable[[str, object], None]:
    def check(where: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(f"{where}: must be an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            bound = f"at least {low}" if high is None else f"between {low} and {high}"
            raise InvalidInputError(f"{where}: must be {bound}, got {value}")

    return check


def _of_type(kind: type, label: str) -> Callable[[str, object], None]:
    def check(where: str, value: object) -> None:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InvalidInputError(f"{where}: must be {label}, got {value!r}")

    return check


def _stop(where: str, value: object) -> None:
    sequences = [value] if isinstance(value, str) else value
    if (
        not isinstance(sequences, list)
        or not 1 <= len(sequences) <= MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and s for s in sequences)
    ):
        raise InvalidInputError(
            f"{where}: must be a non-empty string or a list of 1 to {MAX_STOP_SEQUENCES} of them"
        )


def _logit_bias(where: str, value: object) -> None:
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{where}: must be an object of token id to bias")
    for token, bias in value.items():
        if not str(token).isdigit():
            raise InvalidInputError(f"{where}: key {token!r} is not a token id")
        _number(-100, 100)(f"{where}[{token}]", bias)


def _n(where: str, value: object) -> None:
    if value != 1 or isinstance(value, bool):
        raise InvalidInputError(f"{where}: only 1 is supported (one reply per turn), got {value!r}")


def _object(where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{where}: must be an object, got {type(value).__name__}")
    return value


def check_tool(where: str, tool: object) -> str:
    """Check one OpenAI tool definition; returns its function name."""
    tool = _object(where, tool)
    if tool.get("type") != "function":
        raise InvalidInputError(f"{where}.type: must be 'function', got {tool.get('type')!r}")
    function = _object(f"{where}.function", tool.get("function"))
    name = function.get("name")
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        raise InvalidInputError(
            f"{where}.function.name: must be 1-64 of a-z A-Z 0-9 _ -, got {name!r}"
        )
    if not isinstance(function.get("description", ""), str):
        raise InvalidInputError(f"{where}.function.description: must be a string")
    if "parameters" in function:
        parameters = _object(f"{where}.function.parameters", function["parameters"])
        if parameters.get("type", "object") != "object":
            raise InvalidInputError(
                f"{where}.function.parameters.type: must be 'object', "
                f"got {parameters.get('type')!r}"
            )
        if not isinstance(parameters.get("properties", {}), Mapping):
            raise InvalidInputError(f"{where}.function.parameters.properties: must be an object")
    if not isinstance(function.get("strict", False), bool):
        raise InvalidInputError(f"{where}.function.strict: must be true or false")
    return name


def _tools(where: str, value: object) -> set[str]:
    if not isinstance(value, list) or not value:
        raise InvalidInputError(f"{where}: must be a non-empty list of tools")
    names: set[str] = set()
    for i, tool in enumerate(value):
        name = check_tool(f"{where}[{i}]", tool)
        if name in names:
            raise InvalidInputError(f"{where}[{i}].function.name: {name!r} is declared twice")
        names.add(name)
    return names


def _tool_choice(where: str, value: object, declared: set[str]) -> None:
    if isinstance(value, str):
        if value not in TOOL_CHOICES:
            raise InvalidInputError(
                f"{where}: must be one of {sorted(TOOL_CHOICES)}, got {value!r}"
            )
        if value != "none" and not declared:
            raise InvalidInputError(f"{where}: {value!r} needs tools")
        return
    choice = _object(where, value)
    function = _object(f"{where}.function", choice.get("function"))
    if choice.get("type") != "function" or function.get("name") not in declared:
        raise InvalidInputError(
            f"{where}: must name one of the declared tools, got {function.get('name')!r}"
        )


def _response_format(where: str, value: object) -> None:
    spec = _object(where, value)
    kind = spec.get("type")
    if kind not in RESPONSE_FORMATS:
        raise InvalidInputError(
            f"{where}.type: must be one of {sorted(RESPONSE_FORMATS)}, got {kind!r}"
        )
    if kind == "json_schema":
        schema = _object(f"{where}.json_schema", spec.get("json_schema"))
        name = schema.get("name")
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise InvalidInputError(f"{where}.json_schema.name: must be 1-64 of a-z A-Z 0-9 _ -")
        _object(f"{where}.json_schema.schema", schema.get("schema", {}))


CHECKS: dict[str, Callable[[str, object], None]] = {
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "max_tokens": _integer(1),
    "max_completion_tokens": _integer(1),
    "seed": _integer(-(2**63), 2**63 - 1),
    "top_logprobs": _integer(0, 20),
    "logprobs": _of_type(bool, "true or false"),
    "parallel_tool_calls": _of_type(bool, "true or false"),
    "user": _of_type(str, "a string"),
    "stop": _stop,
    "logit_bias": _logit_bias,
    "n": _n,
    "response_format": _response_format,
}
"""Shape checks for the common parameters; others only need to be JSON."""


def check_chat_params(
    spec: ModelSpec, params: Mapping[str, Any], *, where: str = "turn"
) -> dict[str, Any]:
    """The parameters to send: every one supported for ``spec`` and well formed.

    ``n: 1`` is the default and is dropped (not every provider takes it); anything else the
    provider does not take raises, naming the parameter and the model.
    """
    if not isinstance(params, Mapping):
        raise InvalidInputError(f"{where}: parameters must be an object")
    supported = supported_params(spec.litellm_model)
    checked: dict[str, Any] = {}
    declared: set[str] = set()
    for name, value in params.items():
        label = f"{where}: parameter {name!r}"
        if name in OWNED_BY_THE_SERVICE:
            raise InvalidInputError(f"{label} is set by the service, not by the caller")
        if name == "n":
            _n(label, value)
            continue
        if name not in supported:
            raise InvalidInputError(f"{label} is not supported by {spec.name}")
        if value is None:
            continue
        if name == "tools":
            declared = _tools(label, value)
        elif name in CHECKS:
            CHECKS[name](label, value)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{label}: must be JSON") from None
        checked[name] = value
    if "tool_choice" in checked:
        _tool_choice(f"{where}: parameter 'tool_choice'", checked["tool_choice"], declared)
    return checked
