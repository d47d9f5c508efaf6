"""Anthropic Messages wire format: request parsing, bodies, SSE events, error bodies.

Event order and error types follow docs.anthropic.com ("Streaming Messages", "Errors"), so
litellm's Anthropic handler parses them as it would against api.anthropic.com.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.behaviour import ToolCall, split_arguments
from tests.fakes.wire import Frame, Outcome, ParsedRequest, other_fields

ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Your request was malformed."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    429: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50,000 input "
        "tokens per minute. Please try again later.",
    ),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def parse(body: dict[str, Any]) -> ParsedRequest:
    messages = list(body.get("messages") or [])
    system = body.get("system")
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return ParsedRequest(
        model=str(body.get("model", "")),
        messages=messages,
        stream=bool(body.get("stream")),
        max_tokens=body.get("max_tokens"),
        tools=body.get("tools"),
        params=other_fields(body, "model", "messages", "system", "stream"),
    )


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    kind, text = ERRORS.get(status, ("api_error", f"HTTP {status} from fake"))
    return _error(kind, message or text)


def error_event(status: int) -> bytes:
    """The ``error`` event Anthropic sends mid-stream (``overloaded_error`` for 529)."""
    return _event("error", error_body(status))


def context_error_body(limit: int, tokens: int) -> dict[str, Any]:
    return _error("invalid_request_error", f"prompt is too long: {tokens} tokens > {limit} maximum")


STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _tool_id(request_id: str, index: int, call: ToolCall) -> str:
    return call.id or f"toolu_{request_id}_{index}"


def response(request_id: str, model: str, outcome: Outcome) -> dict[str, Any]:
    text, finish, usage, calls = outcome.text, outcome.finish, outcome.usage, outcome.calls
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text or not calls else []
    content += [
        {"type": "tool_use", "id": _tool_id(request_id, i, c), "name": c.name, "input": c.arguments}
        for i, c in enumerate(calls)
    ]
    return {
        "id": f"msg_{request_id}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS[finish],
        "stop_sequence": None,
        "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens},
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def stream(request_id: str, request: ParsedRequest, outcome: Outcome) -> list[Frame]:
    """message_start, a text block with a ping, one ``tool_use`` block per call (its input
    in ``input_json_delta`` fragments), message_delta with usage, message_stop."""
    pieces, finish, usage, calls = outcome.pieces, outcome.finish, outcome.usage, outcome.calls
    start = {
        "type": "message_start",
        "message": {
            "id": f"msg_{request_id}",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": request.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": 1},
        },
    }
    frames = [Frame(_event("message_start", start))]
    has_text = bool(pieces) or not calls
    if has_text:
        frames += _text_block(pieces)
    for i, call in enumerate(calls):
        frames += _tool_block(has_text, i, request_id, call)
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": STOP_REASONS[finish], "stop_sequence": None},
        "usage": {"output_tokens": usage.completion_tokens},
    }
    frames += [
        Frame(_event("message_delta", delta)),
        Frame(_event("message_stop", {"type": "message_stop"})),
    ]
    return frames


def _text_block(pieces: list[str]) -> list[Frame]:
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    frames = [
        Frame(_event("content_block_start", block)),
        Frame(_event("ping", {"type": "ping"})),
    ]
    frames += [
        Frame(
            _event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": p},
                },
            ),
            text=True,
        )
        for p in pieces
    ]
    frames.append(Frame(_event("content_block_stop", {"type": "content_block_stop", "index": 0})))
    return frames


def _tool_block(after_text: bool, call_index: int, request_id: str, call: ToolCall) -> list[Frame]:
    index = call_index + (1 if after_text else 0)
    block = {
        "type": "content_block_start",
        "index": index,
        "content_block": {
            "type": "tool_use",
            "id": _tool_id(request_id, call_index, call),
            "name": call.name,
            "input": {},
        },
    }
    frames = [Frame(_event("content_block_start", block), text=True)]
    frames += [
        Frame(
            _event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": part},
                },
            ),
            text=True,
        )
        for part in split_arguments(call.arguments_json)
    ]
    frames.append(
        Frame(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    )
    return frames
