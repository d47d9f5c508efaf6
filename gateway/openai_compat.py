"""The OpenAI-compatible API under ``/v1``: point an OpenAI SDK's ``base_url`` here.

The session is the ``X-Session-Id`` header if sent, else the request's ``user`` field, else a
new session for this request alone. OpenAI clients resend the whole history each time; the
pipeline recognises what it already holds and appends only the new messages.

``usage`` is counted here with the model's tokenizer: prompt tokens are the messages as
received (before any compression), completion tokens the reply text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Response

from gateway.auth import require_key
from gateway.errors import responses
from gateway.schemas import (
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
from gateway.turns import Turn, TurnOptions, admit, start_turn, turn_events
from tokenwindow.constants import SESSION_ID_PATTERN
from tokenwindow.events import Event, EventType

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_key)])

SESSION_HEADER = "X-Session-Id"
DONE = frame("[DONE]")


def session_for(header: str | None, body: OpenAIChatRequest) -> str:
    """The header wins over ``user``: a proxy can pin sessions without touching bodies."""
    return header or body.user or f"oa-{uuid.uuid4().hex}"


async def usage(gateway: Gateway, model: str, messages: list[dict[str, Any]], reply: str) -> Usage:
    count = gateway.client.count_tokens
    prompt = (await count(model, messages=messages))["tokens"]
    completion = (await count(model, text=reply))["tokens"] if reply else 0
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


class ChunkStream:
    """Renders a turn's events as ``chat.completion.chunk`` frames, ending with ``[DONE]``."""

    def __init__(
        self,
        gateway: Gateway,
        turn: Turn,
        body: OpenAIChatRequest,
        messages: list[dict[str, Any]],
    ) -> None:
        self.gateway, self.turn, self.messages = gateway, turn, messages
        self.model = body.model
        self.include_usage = bool(body.stream_options and body.stream_options.include_usage)
        self.created = int(time.time())
        self.reply: list[str] = []

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{self.turn.turn_id}",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return self.chunk([{"index": 0, "delta": delta, "finish_reason": finish_reason}])

    async def render(self, event: Event) -> bytes:
        if event["type"] == EventType.TOKEN:
            self.reply.append(event["text"])
            return json_frame(self.delta({"content": event["text"]}), event_id=event["id"])
        if event["type"] != EventType.TURN_COMPLETED:
            return b""
        end = json_frame(self.delta({}, "stop"), event_id=event["id"])
        if self.include_usage:
            counted = await usage(self.gateway, self.model, self.messages, "".join(self.reply))
            end += json_frame(self.chunk([], usage=counted.model_dump()))
        return end + DONE

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield json_frame(self.delta({"role": "assistant", "content": ""}))
        async for piece in relay(turn_events(self.gateway, self.turn), self.render):
            yield piece


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: openapi_content(CHUNKS, "A chat.completion, or with stream its chunks."),
        **responses(401, 404, 413, 422, 429, 502, 503, 504),
    },
)
async def chat_completions(
    body: OpenAIChatRequest,
    gateway: GatewayDep,
    response: Response,
    x_session_id: Annotated[
        str | None,
        Header(pattern=SESSION_ID_PATTERN.pattern, description="Session to continue."),
    ] = None,
) -> Response | ChatCompletion:
    """OpenAI's chat completion, streamed or whole, through the session pipeline."""
    session_id = session_for(x_session_id, body)
    messages = plain_messages(body.messages)
    options: TurnOptions = {
        "model": body.model,
        "temperature": body.temperature,
        "max_tokens": body.max_completion_tokens or body.max_tokens,
    }
    if body.stream:
        turn = await start_turn(gateway, session_id, messages, options)
        chunks = ChunkStream(gateway, turn, body, messages)
        return EventStreamResponse(chunks.__aiter__(), turn.headers())
    await admit(gateway)
    answer = await gateway.client.create_completion(session_id, messages, **options)
    response.headers.update(Turn(session_id, answer["turn_id"], "").headers())
    return ChatCompletion(
        id=f"chatcmpl-{answer['turn_id']}",
        created=int(time.time()),
        model=body.model,
        choices=[Choice(message=AssistantMessage(content=answer["content"]))],
        usage=await usage(gateway, body.model, messages, answer["content"]),
    )


@router.get("/models", response_model=OpenAIModelList, responses=responses(401))
async def list_models(gateway: GatewayDep) -> OpenAIModelList:
    """OpenAI's model list: every model the service knows."""
    data = [OpenAIModel(id=m["name"], owned_by=m["provider"]) for m in gateway.client.models()]
    return OpenAIModelList(data=data)
