"""The original API: chat turns by session, token counting, the model list."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from gateway.auth import CallerDep, require_key
from gateway.errors import responses
from gateway.schemas import (
    ChatRequest,
    ChatResponse,
    CountRequest,
    CountResponse,
    ModelInfo,
    plain_messages,
)
from gateway.sse import SESSION_EVENTS, EventStreamResponse, openapi_content, raw_events, relay
from gateway.state import GatewayDep
from gateway.turns import TurnOptions, start_turn, turn_events, whole_reply

router = APIRouter(tags=["tokenwindow"], dependencies=[Depends(require_key)])


@router.post(
    "/chat/completions",
    response_model=ChatResponse,
    responses={
        200: openapi_content(SESSION_EVENTS, "The reply, or with stream the turn's events."),
        **responses(400, 401, 404, 413, 429, 502, 503, 504),
    },
)
async def chat(
    body: ChatRequest, gateway: GatewayDep, caller: CallerDep
) -> Response | ChatResponse:
    """Enqueue a turn; stream the session's events for it as SSE, or answer once it is done.

    Streamed frames carry ``id:`` (the Redis Stream entry id) and ``event:`` (the event type);
    a failed turn ends with ``event: error``. Reconnect with ``GET /sessions/{id}/events``.
    """
    messages = plain_messages(body.messages)
    options: TurnOptions = {
        "model": body.model,
        "temperature": body.temperature,
        "max_tokens": body.max_tokens,
        "strategy": body.strategy,
    }
    turn = await start_turn(gateway, caller, body.session_id, messages, options)
    if body.stream:
        events = relay(turn_events(gateway, turn), raw_events(caller))
        return EventStreamResponse(events, gateway.keepalive, turn.headers())
    reply = await whole_reply(gateway, turn)
    return ChatResponse(
        session_id=body.session_id,
        turn_id=turn.turn_id,
        model=body.model or gateway.client.default_model(),
        **reply.result(),
    )


@router.post("/tokens/count", response_model=CountResponse, responses=responses(400, 401, 404, 413))
async def count_tokens(body: CountRequest, gateway: GatewayDep) -> CountResponse:
    """Count a text or a chat request exactly as the workers do."""
    messages = plain_messages(body.messages) if body.messages is not None else None
    counted = await gateway.client.count_tokens(
        body.model, text=body.text, messages=messages, tools=body.tools
    )
    return CountResponse.model_validate(counted)


@router.get("/models", response_model=list[ModelInfo], responses=responses(401))
async def models(gateway: GatewayDep) -> list[ModelInfo]:
    """Every model the service knows, with its windows and tokenizer."""
    return [ModelInfo.model_validate(spec) for spec in gateway.client.models()]
