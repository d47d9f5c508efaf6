"""OpenAI chat messages: the one message format the service accepts, stores and sends.

Messages stay plain JSON dicts end to end (task arguments, Redis, litellm), so validation is a
single pass that checks shape and names the offending field, rather than a model layer that
copies every message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NotRequired, TypedDict

from tokenwindow.errors import InvalidInputError

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
ROLES: frozenset[str] = frozenset(("system", "developer", "user", "assistant", "tool", "function"))
SYSTEM_ROLES: frozenset[str] = frozenset(("system", "developer"))
MESSAGE_FIELDS: frozenset[str] = frozenset(
    ("role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal")
)
PART_TYPES: frozenset[str] = frozenset(("text", "image_url", "input_audio", "file", "refusal"))
MAX_MESSAGE_CHARS = 4_000_000
"""One message larger than this (about a million tokens) is rejected outright, not counted."""
_SURROGATE = re.compile("[\ud800-\udfff]")
"""Lone surrogates survive JSON decoding but cannot be encoded as UTF-8 for Redis or HTTP."""


class ToolCallFunction(TypedDict):
    name: str
    arguments: str


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: ToolCallFunction


class Message(TypedDict):
    role: Role
    content: NotRequired[str | list[dict[str, Any]] | None]
    name: NotRequired[str]
    tool_calls: NotRequired[list[ToolCall]]
    tool_call_id: NotRequired[str]


def _fail(where: str, problem: str) -> InvalidInputError:
    return InvalidInputError(f"{where}: {problem}")


def _check_text(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"must be a string, got {type(value).__name__}")
    if len(value) > MAX_MESSAGE_CHARS:
        raise _fail(where, f"is {len(value):,} characters; the limit is {MAX_MESSAGE_CHARS:,}")
    bad = _SURROGATE.search(value)
    if bad is not None:
        raise _fail(where, f"has a lone surrogate at character {bad.start()} (not valid Unicode)")
    return value


def _check_part(where: str, part: object) -> None:
    if not isinstance(part, dict):
        raise _fail(where, f"must be an object, got {type(part).__name__}")
    kind = part.get("type")
    if kind not in PART_TYPES:
        raise _fail(
            f"{where}.type", f"must be one of {', '.join(sorted(PART_TYPES))}; got {kind!r}"
        )
    if kind == "text":
        _check_text(f"{where}.text", part.get("text"))
    elif kind == "refusal":
        _check_text(f"{where}.refusal", part.get("refusal"))
    elif kind == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            raise _fail(f"{where}.image_url", "must be an object with a string 'url'")


def _check_tool_calls(where: str, calls: object) -> None:
    if not isinstance(calls, list) or not calls:
        raise _fail(where, "must be a non-empty list")
    for i, call in enumerate(calls):
        at = f"{where}[{i}]"
        if not isinstance(call, dict):
            raise _fail(at, "must be an object")
        if not isinstance(call.get("id"), str) or not call["id"]:
            raise _fail(f"{at}.id", "must be a non-empty string")
        _check_text(f"{at}.id", call["id"])
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _fail(f"{at}.function", "must be an object with a string 'name'")
        _check_text(f"{at}.function.name", function["name"])
        if not isinstance(function.get("arguments", ""), str):
            raise _fail(f"{at}.function.arguments", "must be a JSON string")
        _check_text(f"{at}.function.arguments", function.get("arguments", ""))


def validate_message(raw: object, where: str = "message") -> Message:
    """Check one message and return it; raise ``InvalidInputError`` naming the bad field."""
    if not isinstance(raw, dict):
        raise _fail(where, f"must be an object, got {type(raw).__name__}")
    unknown = raw.keys() - MESSAGE_FIELDS
    if unknown:
        raise _fail(f"{where}.{sorted(unknown)[0]}", "is not an OpenAI chat message field")
    role = raw.get("role")
    if role is None:
        raise _fail(f"{where}.role", "is missing")
    if role not in ROLES:
        raise _fail(f"{where}.role", f"must be one of {', '.join(sorted(ROLES))}; got {role!r}")
    content = raw.get("content")
    if isinstance(content, list):
        if role in ("tool", "function") and not content:
            raise _fail(f"{where}.content", "must not be empty")
        for i, part in enumerate(content):
            _check_part(f"{where}.content[{i}]", part)
    elif content is None:
        if "content" not in raw and role != "assistant":
            raise _fail(f"{where}.content", "is missing")
        if role not in ("assistant",):
            raise _fail(f"{where}.content", f"may be null only for assistant messages, not {role}")
        if not raw.get("tool_calls") and not raw.get("function_call"):
            raise _fail(f"{where}.content", "is null and the message has no tool_calls")
    else:
        _check_text(f"{where}.content", content)
    if "name" in raw:
        _check_text(f"{where}.name", raw["name"])
    if "tool_calls" in raw:
        if role != "assistant":
            raise _fail(f"{where}.tool_calls", f"is only allowed on assistant messages, not {role}")
        _check_tool_calls(f"{where}.tool_calls", raw["tool_calls"])
    if role == "tool" and not isinstance(raw.get("tool_call_id"), str):
        raise _fail(f"{where}.tool_call_id", "is required on tool messages")
    if "tool_call_id" in raw:
        _check_text(f"{where}.tool_call_id", raw["tool_call_id"])
    return raw  # type: ignore[return-value]


def validate_messages(raw: object, *, allow_empty: bool = False) -> list[Message]:
    """Check a message list; errors name the index and field, e.g. ``messages[3].role``."""
    if not isinstance(raw, list | tuple):
        raise _fail("messages", f"must be a list, got {type(raw).__name__}")
    if not raw and not allow_empty:
        raise _fail("messages", "must not be empty")
    return [validate_message(m, f"messages[{i}]") for i, m in enumerate(raw)]


def check_tool_results(messages: Sequence[Message], earlier: Iterable[Message] = ()) -> None:
    """Every tool result must answer a tool call made before it (in ``earlier`` or this list).

    Providers reject an orphan result, so storing one would fail every later turn of the session.
    """
    known = {call_id for m in earlier for call_id in tool_call_ids(m)}
    for i, message in enumerate(messages):
        known.update(tool_call_ids(message))
        call_id = message.get("tool_call_id")
        if message["role"] == "tool" and call_id not in known:
            raise _fail(
                f"messages[{i}].tool_call_id",
                f"{call_id!r:.80} answers no earlier assistant tool call",
            )


def text_of(message: Message) -> str:
    """The message's human-readable text: content parts joined, tool calls as name(args)."""
    content = message.get("content")
    pieces: list[str] = []
    if isinstance(content, str):
        pieces.append(content)
    elif isinstance(content, list):
        pieces.extend(
            str(p.get("text") or p.get("refusal") or "")
            for p in content
            if p.get("type") in ("text", "refusal")
        )
    for call in message.get("tool_calls") or ():
        fn = call["function"]
        pieces.append(f"{fn['name']}({fn.get('arguments', '')})")
    return "\n".join(p for p in pieces if p)


def is_system(message: Message) -> bool:
    return message["role"] in SYSTEM_ROLES


def tool_call_ids(message: Message) -> Sequence[str]:
    return [c["id"] for c in message.get("tool_calls") or ()]
