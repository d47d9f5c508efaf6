"""The Anthropic Messages API at ``/v1/messages``: point an Anthropic SDK's ``base_url`` here.

Requests are translated to the chat format with litellm's own Anthropic adapter (the one its
proxy serves ``/v1/messages`` with), then run as a turn exactly like ``/v1/chat/completions``:
``X-Session-Id`` names a session, without it the request is stateless. Replies and errors are
in Anthropic's shapes; streams send its event sequence (``message_start``, ``content_block_*``,
``message_delta``, ``message_stop``, ``ping``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import CallerDep, require_key
from gateway.errors import responses
from gateway.sse import EventStreamResponse, anthropic_error, json_frame, relay
from gateway.state import Gateway, GatewayDep
from gateway.turns import (
    SESSION_HEADER,
    SessionHeader,
    Turn,
    TurnOptions,
    start_turn,
    turn_events,
    whole_reply,
)
from tokenwindow.errors import InvalidInputError, TurnFailedError
from tokenwindow.events import Event, EventType
from tokenwindow.models import get_registry
from tokenwindow.replies import RESTARTED, RESTARTED_MESSAGE, ReplyAssembler

router = APIRouter(prefix="/v1", tags=["anthropic"], dependencies=[Depends(require_key)])

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
"""Anthropic's ``stop_reason`` for a chat ``finish_reason`` (any other: ``end_turn``)."""


class AnthropicMessage(BaseModel):
    """One Anthropic message: text, or content blocks (text, image, tool_use, tool_result)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesRequest(BaseModel):
    """Anthropic's Messages request. Every field is passed on; any other is refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": "claude-3-5-sonnet",
                    "max_tokens": 256,
                    "messages": [{"role": "user", "content": "Hi"}],
                }
            ]
        },
    )

    model: str
    messages: list[AnthropicMessage] = Field(min_length=1)
    max_tokens: int = Field(gt=0, le=1_000_000)
    system: str | list[dict[str, Any]] | None = None
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, gt=0)
    stop_sequences: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolUseBlock(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class MessageUsage(BaseModel):
    input_tokens: int
    output_tokens: int


class MessageResponse(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[TextBlock | ToolUseBlock]
    stop_reason: str
    stop_sequence: None = None
    usage: MessageUsage = Field(description="The provider's figures (zeros when it gave none).")


def to_chat(body: MessagesRequest) -> tuple[list[dict[str, Any]], TurnOptions]:
    """The turn's messages and options, translated by litellm's Anthropic adapter."""
    from litellm.llms.anthropic.messages.adapters.transformation import AnthropicAdapter

    request = body.model_dump(exclude_none=True, exclude={"stream"})
    # The provider's own model name lets the adapter pick that provider's rules (and an
    # unknown model is a 404 before anything is translated).
    request["model"] = get_registry().get(body.model).litellm_model
    try:
        translated = AnthropicAdapter().translate_completion_input_params(request)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # The adapter trusts its input; what it cannot read is the caller's content blocks.
        raise InvalidInputError(
            f"messages: content blocks could not be read ({exc!r:.200})"
        ) from None
    if translated is None:
        raise InvalidInputError("messages: the request could not be translated")
    chat: dict[str, Any] = dict(translated)
    messages = [{k: v for k, v in m.items() if v is not None} for m in chat.pop("messages")]
    if not messages:
        raise InvalidInputError("messages: no content the gateway can pass on")
    chat.pop("model", None)
    options: TurnOptions = {
        "model": body.model,
        "max_tokens": chat.pop("max_tokens", None),
        "temperature": chat.pop("temperature", None),
        "params": chat or None,
        "history": True,
    }
    return messages, options


def message_id(turn: Turn) -> str:
    return f"msg_{turn.turn_id}"


def usage_of(reply: ReplyAssembler) -> MessageUsage:
    usage = reply.usage or {}
    return MessageUsage(
        input_tokens=usage.get("prompt_tokens", 0), output_tokens=usage.get("completion_tokens", 0)
    )


def stop_reason(reply: ReplyAssembler) -> str:
    finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
    return STOP_REASONS.get(finish, "end_turn")


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as the ``input`` object (``{}`` when not an object)."""
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def message(turn: Turn, model: str, reply: ReplyAssembler) -> MessageResponse:
    content: list[TextBlock | ToolUseBlock] = [TextBlock(text=reply.text)] if reply.text else []
    content += [
        ToolUseBlock(
            id=call["id"] or "",
            name=call["function"]["name"] or "",
            input=tool_input(call["function"]["arguments"]),
        )
        for call in reply.tool_calls
    ]
    return MessageResponse(
        id=message_id(turn),
        model=model,
        content=content,
        stop_reason=stop_reason(reply),
        usage=usage_of(reply),
    )


def event_frame(kind: str, **fields: Any) -> bytes:
    return json_frame({"type": kind, **fields}, event=kind)


class MessageStream:
    """Renders a turn's events as Anthropic's message stream.

    Text streams as it comes. Tool calls go out whole once the turn completes, one
    ``tool_use`` block each: chat providers may interleave the fragments of parallel calls,
    and an Anthropic stream cannot return to a block it has closed.
    """

    def __init__(self, gateway: Gateway, turn: Turn, model: str) -> None:
        self.gateway, self.turn, self.model = gateway, turn, model
        self.reply = ReplyAssembler()
        self.blocks = 0
        self.text_open = False

    def _start(self, block: dict[str, Any]) -> bytes:
        return event_frame("content_block_start", index=self.blocks, content_block=block)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return event_frame("content_block_delta", index=self.blocks, delta=delta)

    def _stop(self) -> bytes:
        self.blocks += 1
        return event_frame("content_block_stop", index=self.blocks - 1)

    def _tool_blocks(self) -> bytes:
        out = b""
        for call in self.reply.tool_calls:
            function = call["function"]
            out += self._start(
                {"type": "tool_use", "id": call["id"], "name": function["name"], "input": {}}
            )
            out += self._delta({"type": "input_json_delta", "partial_json": function["arguments"]})
            out += self._stop()
        return out

    async def render(self, event: Event) -> bytes:
        kind = event["type"]
        if kind == EventType.TURN_RESTARTED and (self.blocks or self.text_open):
            raise TurnFailedError(RESTARTED, RESTARTED_MESSAGE)
        if kind != EventType.TURN_FAILED:
            self.reply.feed(event)
        if kind == EventType.TOKEN:
            out = b"" if self.text_open else self._start({"type": "text", "text": ""})
            self.text_open = True
            return out + self._delta({"type": "text_delta", "text": event["text"]})
        if kind != EventType.TURN_COMPLETED:
            return b""
        out = self._stop() if self.text_open else b""
        self.text_open = False
        delta = {"stop_reason": stop_reason(self.reply), "stop_sequence": None}
        return (
            out
            + self._tool_blocks()
            + event_frame("message_delta", delta=delta, usage=usage_of(self.reply).model_dump())
            + event_frame("message_stop")
        )

    async def __aiter__(self) -> AsyncIterator[bytes]:
        start = MessageResponse(
            id=message_id(self.turn),
            model=self.model,
            content=[],
            stop_reason="end_turn",
            usage=MessageUsage(input_tokens=0, output_tokens=0),
        ).model_dump()
        start["stop_reason"] = None
        yield event_frame("message_start", message=start)
        yield event_frame("ping")
        events = turn_events(self.gateway, self.turn)
        async for piece in relay(events, self.render, anthropic_error):
            yield piece


@router.post(
    "/messages",
    response_model=MessageResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "With stream, events."},
        **responses(400, 401, 404, 413, 429, 502, 503, 504),
    },
)
async def messages(
    body: MessagesRequest,
    gateway: GatewayDep,
    caller: CallerDep,
    response: Response,
    x_session_id: SessionHeader = None,
) -> Response | MessageResponse:
    """Anthropic's Messages API, streamed or whole, through the session pipeline."""
    chat, options = to_chat(body)
    turn = await start_turn(gateway, caller, x_session_id, chat, options, field=SESSION_HEADER)
    if body.stream:
        stream = MessageStream(gateway, turn, body.model).__aiter__()
        return EventStreamResponse(
            stream, gateway.keepalive, turn.headers(), on_error=anthropic_error
        )
    reply = await whole_reply(gateway, turn)
    response.headers.update(turn.headers())
    return message(turn, body.model, reply)
