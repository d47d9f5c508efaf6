"""Server-Sent Events: framing, keep-alive pings, and relaying a session's events.

Every frame relayed from the session's Redis Stream carries ``id:`` = the stream entry id, so a
client that reconnects with ``Last-Event-ID`` resumes right after the last event it saw.

Framing follows the SSE grammar (and sse-starlette): data is split into ``data:`` lines only at
CR, LF and CRLF, never at the other Unicode line breaks ``str.splitlines`` knows. JSON data is
kept on one line, with U+2028, U+2029 and U+0085 escaped for clients that split on them anyway.
A ``: ping`` comment goes out after ``TOKENWINDOW_SSE_PING_SECONDS`` of silence, and every
stream ends with a final frame when the server is asked to stop.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from starlette.responses import StreamingResponse

from gateway.errors import API_ERROR, ERROR_REF, ApiError, invalid, turn_failure
from gateway.schemas import StreamEvent
from gateway.tenants import Caller
from tokenwindow.constants import STREAM_ID_PATTERN
from tokenwindow.errors import TurnFailedError
from tokenwindow.events import Event, EventType


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


LINE_BREAK = re.compile(r"\r\n|\r|\n")
"""The only line ends of the SSE grammar."""
UNSAFE_IN_LINES = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})
"""Line breaks to some line splitters (``str.splitlines``, JavaScript) that JSON may escape."""
PING = b": ping\n\n"


def frame(data: str, *, event: str | None = None, event_id: str | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in LINE_BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def json_line(payload: Mapping[str, Any]) -> str:
    """JSON on one line whatever the text it holds."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).translate(UNSAFE_IN_LINES)


def json_frame(payload: Mapping[str, Any], **fields: str | None) -> bytes:
    return frame(json_line(payload), **fields)


ErrorFramer = Callable[[ApiError], bytes]
"""The frame that ends a failed stream, in the stream's own dialect."""


def openai_error(error: ApiError) -> bytes:
    """OpenAI's error shape as ``event: error`` (the OpenAI SDK raises ``APIError`` on it)."""
    return json_frame(error.openai_body(), event="error")


def anthropic_error(error: ApiError) -> bytes:
    """Anthropic's ``event: error`` (the Anthropic SDK raises ``APIStatusError`` on it)."""
    return json_frame(error.anthropic_body(), event="error")


SHUTTING_DOWN = ApiError(
    503,
    "the gateway is shutting down; reconnect to resume",
    type=API_ERROR,
    code="shutting_down",
)


Renderer = Callable[[Event], Awaitable[bytes]]
"""Turns one event into the bytes to send (``b""`` to send nothing); may raise
``TurnFailedError`` to end the stream with an error."""


def raw_events(caller: Caller) -> Renderer:
    """Events as they are, ``event:`` = their type (the original API's stream format), with
    the session id the caller knows."""

    async def render(event: Event) -> bytes:
        shown = {**event, "session_id": caller.external(event["session_id"])}
        return json_frame(shown, event=event["type"], event_id=event["id"])

    return render


async def relay(
    events: AsyncIterator[Event], render: Renderer, on_error: ErrorFramer = openai_error
) -> AsyncIterator[bytes]:
    """Rendered events; a failed turn, a timeout or a lost store ends with an error frame."""
    try:
        async for event in events:
            if rendered := await render(event):
                yield rendered
            if event["type"] == EventType.TURN_FAILED:
                failed = TurnFailedError(
                    event.get("code", "error"),
                    event.get("message", "the turn failed"),
                    retry_after=event.get("retry_after"),
                )
                yield on_error(turn_failure(failed))
    except TurnFailedError as exc:
        yield on_error(turn_failure(exc))
    except TimeoutError as exc:
        yield on_error(ApiError(504, str(exc), type=API_ERROR, code="timeout"))
    except redis.exceptions.ConnectionError:
        message = "the session store is unavailable"
        yield on_error(ApiError(503, message, type=API_ERROR, code="store_unavailable"))


def resume_point(header: str | None, query: str | None) -> str | None:
    """Where a stream resumes: the ``Last-Event-ID`` header (set by reconnecting clients) wins
    over the query parameter of the original URL."""
    cursor = header or query
    if cursor is not None and not STREAM_ID_PATTERN.fullmatch(cursor):
        raise invalid(
            f"last_event_id: must be a stream entry id like 1700000000000-0, got {cursor!r:.40}"
        )
    return cursor


@dataclass(frozen=True)
class Keepalive:
    """What every stream of one app shares: the ping interval and the shutdown signal."""

    ping_seconds: float
    closing: asyncio.Event


def _quietly(task: asyncio.Future[Any]) -> None:
    """Collect the outcome of a read nobody waits for any more (so none is reported)."""
    if not task.cancelled():
        task.exception()


async def keep_alive(
    content: AsyncIterator[bytes], keepalive: Keepalive, farewell: bytes
) -> AsyncIterator[bytes]:
    """``content`` with a ping after each silence, ended by ``farewell`` at shutdown."""
    stop: asyncio.Future[Any] = asyncio.ensure_future(keepalive.closing.wait())
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(content))
            done, _ = await asyncio.wait(
                {pending, stop},
                timeout=keepalive.ping_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if pending in done:
                try:
                    piece = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield piece
            elif stop in done:
                yield farewell
                return
            else:
                yield PING
    finally:
        stop.cancel()
        if pending is not None:
            # Not awaited: a blocking Redis read may take its time to notice the cancellation,
            # and the response must end now (its end lets the server stop).
            pending.cancel()
            pending.add_done_callback(_quietly)
        elif (close := getattr(content, "aclose", None)) is not None:
            await close()


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` that proxies neither cache nor buffer, kept alive by pings."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[bytes],
        keepalive: Keepalive,
        headers: Mapping[str, str] | None = None,
        *,
        on_error: ErrorFramer = openai_error,
    ) -> None:
        fixed = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        end = on_error(SHUTTING_DOWN)
        super().__init__(
            keep_alive(content, keepalive, end), 200, headers={**fixed, **(headers or {})}
        )
