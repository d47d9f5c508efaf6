"""Gemini API (Google AI Studio) wire format: ``generateContent`` and its SSE stream.

Shapes follow ai.google.dev ("Generating content", "Troubleshooting"): errors are
``google.rpc.Status`` bodies, and a 429 says when to retry in a ``RetryInfo`` detail rather
than a ``Retry-After`` header. The API accepts snake_case and camelCase field names alike.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.behaviour import ToolCall
from tests.fakes.wire import Frame, Outcome, ParsedRequest, Usage, other_fields

RETRY_AFTER_IN_BODY = True
"""The server puts a fault's ``retry_after`` into the body instead of a header."""
MODEL_VERSION = "gemini-1.5-pro-002"

ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential.",
    ),
    403: (
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    ),
    404: (
        "NOT_FOUND",
        f"models/{MODEL_VERSION} is not found for API version v1beta, or is not supported "
        "for generateContent.",
    ),
    429: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    ),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}
ROLES = {"user": "user", "model": "assistant"}
FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
"""Gemini has no tool-call finish reason: a reply that calls functions stops with STOP."""


def _field(data: dict[str, Any], camel: str, snake: str) -> Any:
    return data.get(camel, data.get(snake))


def _text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    return "".join(str(p.get("text", "")) for p in parts or [] if isinstance(p, dict))


def parse(body: dict[str, Any], model: str, *, stream: bool) -> ParsedRequest:
    """Model and streaming come from the URL (``/models/{model}:streamGenerateContent``)."""
    messages = [
        {"role": ROLES.get(str(c.get("role", "user")), "user"), "content": _text(c)}
        for c in body.get("contents") or []
        if isinstance(c, dict)
    ]
    system = _field(body, "systemInstruction", "system_instruction")
    if system:
        messages.insert(0, {"role": "system", "content": _text(system)})
    config = _field(body, "generationConfig", "generation_config") or {}
    return ParsedRequest(
        model=model,
        messages=messages,
        stream=stream,
        max_tokens=_field(config, "maxOutputTokens", "max_output_tokens"),
        tools=body.get("tools"),
        params=other_fields(body, "contents", "systemInstruction", "system_instruction"),
    )


def error_body(
    status: int, message: str | None = None, *, retry_after: float | None = None
) -> dict[str, Any]:
    kind, text = ERRORS.get(status, ("UNKNOWN", f"HTTP {status} from fake"))
    error: dict[str, Any] = {"code": status, "message": message or text, "status": kind}
    if retry_after is not None:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}
        ]
    return {"error": error}


def error_event(status: int) -> bytes:
    """A ``google.rpc.Status`` error sent as a stream event after a 200."""
    return f"data: {json.dumps(error_body(status))}\r\n\r\n".encode()


def context_error_body(limit: int, tokens: int) -> dict[str, Any]:
    message = (
        f"The input token count ({tokens}) exceeds the maximum number of tokens allowed ({limit})."
    )
    return error_body(400, message)


def _usage(usage: Usage, *, completion: int | None) -> dict[str, Any]:
    data: dict[str, Any] = {"promptTokenCount": usage.prompt_tokens}
    if completion is not None:
        data["candidatesTokenCount"] = completion
    data["totalTokenCount"] = usage.prompt_tokens + (completion or 0)
    data["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage.prompt_tokens}]
    return data


def _body(
    request_id: str,
    text: str,
    finish: str | None,
    usage: dict[str, Any],
    calls: tuple[ToolCall, ...] = (),
) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": text}] if text or not calls else []
    parts += [{"functionCall": {"name": c.name, "args": c.arguments}} for c in calls]
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish is not None:
        candidate["finishReason"] = FINISH_REASONS[finish]
    candidate["index"] = 0
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": MODEL_VERSION,
        "responseId": request_id,
    }


def response(request_id: str, model: str, outcome: Outcome) -> dict[str, Any]:
    text, finish, usage, calls = outcome.text, outcome.finish, outcome.usage, outcome.calls
    return _body(request_id, text, finish, _usage(usage, completion=usage.completion_tokens), calls)


def stream(request_id: str, request: ParsedRequest, outcome: Outcome) -> list[Frame]:
    """One ``GenerateContentResponse`` per piece, then the finish reason with the full usage.

    Function calls come whole, all of a reply's parallel calls as parts of one event.

    Like the real API, every event carries ``usageMetadata`` (prompt tokens from the first
    event) and events are separated by CRLF pairs.
    """
    pieces, finish, usage, calls = outcome.pieces, outcome.finish, outcome.usage, outcome.calls

    def event(data: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(data)}\r\n\r\n".encode()

    frames = [
        Frame(event(_body(request_id, p, None, _usage(usage, completion=None))), text=True)
        for p in pieces
    ]
    if calls:
        partial = _usage(usage, completion=None)
        frames.append(Frame(event(_body(request_id, "", None, partial, calls)), text=True))
    final = _usage(usage, completion=usage.completion_tokens)
    frames.append(Frame(event(_body(request_id, "", finish, final))))
    return frames
