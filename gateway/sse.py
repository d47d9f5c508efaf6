"""Server-Sent Events: framing, and relaying a session's events with their stream ids.

Every frame relayed from the session's Redis Stream carries ``id:`` = the stream entry id, so a
client that reconnects with ``Last-Event-ID`` resumes right after the last event it saw.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import redis.exceptions
from starlette.responses import StreamingResponse

from gateway.errors import ERROR_REF, ApiError, error_body
from gateway.schemas import StreamEvent
from tokenwindow.events import Event, EventType

STREAM_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
"""A Redis Stream entry id (``ms-seq``, or ``ms`` alone); ``0`` replays everything kept."""


def openapi_content(data: dict[str, Any], description: str) -> dict[str, Any]:
    """OpenAPI ``content`` of an event stream; ``data`` describes each event's data field."""
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "id": {"type": "string", "description": "Stream entry id, for Last-Event-ID."},
            "event": {"type": "string"},
            "data": data,
        },
    }
    return {"content": {"text/event-stream": {"schema": event}}, "description": description}


SESSION_EVENTS = {
    "type": "string",
    "contentMediaType": "application/json",
    "contentSchema": {"anyOf": [StreamEvent.model_json_schema(), ERROR_REF]},
}
"""Data of the original API's events: a session event, or the error ending a failed stream."""
CHUNKS = {
    "type": "string",
    "description": "JSON of a chat.completion.chunk or of an error; the literal [DONE] ends it.",
}
"""Data of the OpenAI-compatible stream (``[DONE]`` is not JSON, so no content schema)."""


def frame(data: str, *, event: str | None = None, event_id: str | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()


def json_frame(payload: Mapping[str, Any], **fields: str | None) -> bytes:
    return frame(json.dumps(payload, ensure_ascii=False, separators=(",", ":")), **fields)


def error_frame(message: str, code: str, *, type: str = "api_error") -> bytes:
    """The frame that ends a stream that failed: OpenAI's error shape, as ``event: error``."""
    return json_frame(error_body(message, type=type, code=code), event="error")


def failure_frame(event: Event) -> bytes:
    """The error frame for a ``turn_failed`` event."""
    return error_frame(event.get("message", "the turn failed"), event.get("code", "error"))


Renderer = Callable[[Event], Awaitable[bytes]]
"""Turns one event into the bytes to send (``b""`` to send nothing)."""


async def raw_event(event: Event) -> bytes:
    """The event as it is, ``event:`` = its type: the original API's stream format."""
    return json_frame(event, event=event["type"], event_id=event["id"])


async def relay(events: AsyncIterator[Event], render: Renderer) -> AsyncIterator[bytes]:
    """Rendered events; a failed turn, a timeout or a lost store ends with an error frame."""
    try:
        async for event in events:
            if rendered := await render(event):
                yield rendered
            if event["type"] == EventType.TURN_FAILED:
                yield failure_frame(event)
    except TimeoutError as exc:
        yield error_frame(str(exc), "timeout")
    except redis.exceptions.ConnectionError:
        yield error_frame("the session store is unavailable", "store_unavailable")


def resume_point(header: str | None, query: str | None) -> str | None:
    """Where a stream resumes: the ``Last-Event-ID`` header (set by reconnecting clients) wins
    over the query parameter of the original URL."""
    cursor = header or query
    if cursor is not None and not STREAM_ID.fullmatch(cursor):
        raise ApiError(
            422,
            f"last_event_id: must be a stream entry id like 1700000000000-0, got {cursor!r:.40}",
            code="invalid_input",
            param="last_event_id",
        )
    return cursor


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` that proxies neither cache nor buffer."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[bytes],
        headers: Mapping[str, str] | None = None,
        status_code: int = 200,
    ) -> None:
        fixed = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(content, status_code, headers={**fixed, **(headers or {})})
