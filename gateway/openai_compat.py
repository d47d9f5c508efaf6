"""The OpenAI-compatible API under ``/v1``: point an OpenAI SDK's ``base_url`` here.

A request continues a session only when it sends ``X-Session-Id``; without it the request is
stateless (its own messages are fitted to the window, see ``gateway.stateless``). ``user`` is
the end-user id OpenAI defines, passed on to the provider. OpenAI clients resend the whole
history each time; the pipeline recognises what it already holds and appends only the rest.

``finish_reason`` and ``usage`` are the provider's, from the turn's ``turn_completed`` event.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Response

from gateway.auth import CallerDep, require_key
from gateway.errors import responses
from gateway.schemas import (
    PASSED_PARAMS,
    AssistantMessage,
    ChatCompletion,
    Choice,
    OpenAIChatRequest,
    OpenAIModel,
    OpenAIModelList,
    Usage,
    plain_messages,
)
from gateway.sse import CHUNKS, EventStreamResponse, frame, json_frame, openapi_content, relay
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
from tokenwindow.errors import TurnFailedError
from tokenwindow.events import Event, EventType
from tokenwindow.replies import RESTARTED, RESTARTED_MESSAGE, TOOL_CALL_EVENT, ReplyAssembler

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_key)])

DONE = frame("[DONE]")


def turn_options(body: OpenAIChatRequest) -> TurnOptions:
    """What the turn carries: every request field except the ones the route itself uses."""
    params = {
        name: getattr(body, name) for name in PASSED_PARAMS if getattr(body, name) is not None
    }
    return {
        "model": body.model,
        "temperature": body.temperature,
        "max_tokens": body.max_completion_tokens or body.max_tokens,
        "params": params or None,
        "history": True,
    }


def completion_id(turn: Turn) -> str:
    return f"chatcmpl-{turn.turn_id}"


def tool_call_delta(event: Event) -> dict[str, Any]:
    """A tool-call fragment as OpenAI streams it: id, type and name on the first only."""
    call: dict[str, Any] = {"index": event["index"]}
    if event.get("call_id"):
        call.update(id=event["call_id"], type="function")
    function: dict[str, Any] = {"arguments": event.get("arguments") or ""}
    if event.get("name"):
        function["name"] = event["name"]
    call["function"] = function
    return call


class ChunkStream:
    """Renders a turn's events as ``chat.completion.chunk`` frames, ending with ``[DONE]``."""

    def __init__(self, gateway: Gateway, turn: Turn, body: OpenAIChatRequest) -> None:
        self.gateway, self.turn = gateway, turn
        self.model = body.model
        self.include_usage = bool(body.stream_options and body.stream_options.include_usage)
        self.created = int(time.time())
        self.reply = ReplyAssembler()
        self.sent = False

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": completion_id(self.turn),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": choices,
            **extra,
        }

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self.chunk([choice])

    async def render(self, event: Event) -> bytes:
        kind = event["type"]
        if kind == EventType.TURN_RESTARTED and self.sent:
            # What the client has shown cannot be taken back: fail rather than splice.
            raise TurnFailedError(RESTARTED, RESTARTED_MESSAGE)
        if kind != EventType.TURN_FAILED:
            self.reply.feed(event)
        if kind == EventType.TOKEN:
            self.sent = True
            return json_frame(self.delta({"content": event["text"]}), event_id=event["id"])
        if kind == TOOL_CALL_EVENT:
            self.sent = True
            delta = {"tool_calls": [tool_call_delta(event)]}
            return json_frame(self.delta(delta), event_id=event["id"])
        if kind != EventType.TURN_COMPLETED:
            return b""
        finish = self.reply.finish_reason or ("tool_calls" if self.reply.tool_calls else "stop")
        end = json_frame(self.delta({}, finish), event_id=event["id"])
        if self.include_usage:
            end += json_frame(self.chunk([], usage=self.reply.usage))
        return end + DONE

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield json_frame(self.delta({"role": "assistant", "content": ""}))
        async for piece in relay(turn_events(self.gateway, self.turn), self.render):
            yield piece


def completion(turn: Turn, model: str, reply: ReplyAssembler) -> ChatCompletion:
    calls = reply.tool_calls
    message = AssistantMessage(
        content=reply.text or (None if calls else ""), tool_calls=calls or None
    )
    finish = reply.finish_reason or ("tool_calls" if calls else "stop")
    return ChatCompletion(
        id=completion_id(turn),
        created=int(time.time()),
        model=model,
        choices=[Choice(message=message, finish_reason=finish)],
        usage=Usage.model_validate(reply.usage) if reply.usage else None,
    )


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: openapi_content(CHUNKS, "A chat.completion, or with stream its chunks."),
        **responses(400, 401, 404, 413, 429, 502, 503, 504),
    },
)
async def chat_completions(
    body: OpenAIChatRequest,
    gateway: GatewayDep,
    caller: CallerDep,
    response: Response,
    x_session_id: SessionHeader = None,
) -> Response | ChatCompletion:
    """OpenAI's chat completion, streamed or whole, through the session pipeline."""
    messages = plain_messages(body.messages)
    turn = await start_turn(
        gateway, caller, x_session_id, messages, turn_options(body), field=SESSION_HEADER
    )
    if body.stream:
        chunks = ChunkStream(gateway, turn, body)
        return EventStreamResponse(chunks.__aiter__(), gateway.keepalive, turn.headers())
    reply = await whole_reply(gateway, turn)
    response.headers.update(turn.headers())
    return completion(turn, body.model, reply)


@router.get("/models", response_model=OpenAIModelList, responses=responses(401))
async def list_models(gateway: GatewayDep) -> OpenAIModelList:
    """OpenAI's model list: every model the service knows."""
    data = [OpenAIModel(id=m["name"], owned_by=m["provider"]) for m in gateway.client.models()]
    return OpenAIModelList(data=data)
