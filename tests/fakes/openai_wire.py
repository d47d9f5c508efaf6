"""OpenAI chat-completions wire format: request parsing, bodies, SSE chunks, error bodies.

Shapes and messages copy what api.openai.com returns, so the OpenAI SDK inside litellm parses
them exactly as it would in production.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.fakes.behaviour import ToolCall, split_arguments
from tests.fakes.wire import Frame, Outcome, ParsedRequest, Usage, other_fields

ERRORS: dict[int, tuple[str, str | None, str]] = {
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: sk-fake***. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    429: (
        "tokens",
        "rate_limit_exceeded",
        "Rate limit reached for gpt-4o in organization org-fake on tokens per min (TPM): "
        "Limit 30000, Used 30000, Requested 1000. Please try again in 2s. "
        "Visit https://platform.openai.com/account/rate-limits to learn more.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
}


def parse(body: dict[str, Any]) -> ParsedRequest:
    options = body.get("stream_options") or {}
    return ParsedRequest(
        model=str(body.get("model", "")),
        messages=list(body.get("messages") or []),
        stream=bool(body.get("stream")),
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
        include_usage=bool(options.get("include_usage")),
        tools=body.get("tools"),
        params=other_fields(body, "model", "messages", "stream", "stream_options"),
    )


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    kind, code, text = ERRORS.get(status, ("server_error", None, f"HTTP {status} from fake"))
    return {"error": {"message": message or text, "type": kind, "param": None, "code": code}}


def error_event(status: int) -> bytes:
    """An error sent as a stream event after a 200 (as OpenAI-compatible servers do)."""
    return f"data: {json.dumps(error_body(status))}\n\n".encode()


def context_error_body(limit: int, tokens: int) -> dict[str, Any]:
    return {
        "error": {
            "message": f"This model's maximum context length is {limit} tokens. However, your "
            f"messages resulted in {tokens} tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def _call_id(request_id: str, index: int, call: ToolCall) -> str:
    return call.id or f"call_{request_id}_{index}"


def response(request_id: str, model: str, outcome: Outcome) -> dict[str, Any]:
    text, finish, usage, calls = outcome.text, outcome.finish, outcome.usage, outcome.calls
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = [
            {
                "id": _call_id(request_id, i, call),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
            for i, call in enumerate(calls)
        ]
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": _usage(usage),
    }


def stream(request_id: str, request: ParsedRequest, outcome: Outcome) -> list[Frame]:
    """``chat.completion.chunk`` events, the usage chunk when asked for, then ``[DONE]``.

    Tool calls follow the text one after another, as OpenAI sends parallel calls: a first
    delta with the call's ``id`` and ``name``, then its ``arguments`` in fragments.
    """
    pieces, finish, usage, calls = outcome.pieces, outcome.finish, outcome.usage, outcome.calls
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
        data: dict[str, Any] = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": request.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if request.include_usage:
            data["usage"] = None
        return f"data: {json.dumps(data)}\n\n".encode()

    frames = [Frame(chunk({"role": "assistant", "content": "", "refusal": None}, None))]
    frames += [Frame(chunk({"content": piece}, None), text=True) for piece in pieces]
    for i, call in enumerate(calls):
        first = {
            "index": i,
            "id": _call_id(request_id, i, call),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        frames.append(Frame(chunk({"tool_calls": [first]}, None), text=True))
        for part in split_arguments(call.arguments_json):
            fragment = {"index": i, "function": {"arguments": part}}
            frames.append(Frame(chunk({"tool_calls": [fragment]}, None), text=True))
    frames.append(Frame(chunk({}, finish)))
    if request.include_usage:
        last = {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": request.model,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": _usage(usage),
        }
        frames.append(Frame(f"data: {json.dumps(last)}\n\n".encode()))
    frames.append(Frame(b"data: [DONE]\n\n"))
    return frames
