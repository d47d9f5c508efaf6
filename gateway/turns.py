"""Starting a turn for a route: its session (or none), admission, then the client's submit.

A request belongs to a session only when it names one (``X-Session-Id``, or the native route's
``session_id``). Without one it is stateless: its own messages are fitted to the window, run as
the one turn of a throwaway session (``stateless-<hex>`` of the caller's tenant), and that
session is deleted once the turn has ended.

Streaming routes need the turn's events with their stream ids, so they take the stream position
first and subscribe from it, exactly as ``TokenManagementClient.create_completion`` does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from fastapi import Header

from gateway.state import Gateway
from gateway.tenants import Caller
from tokenwindow.client import DEFAULT_TIMEOUT_SECONDS
from tokenwindow.constants import SESSION_ID_PATTERN
from tokenwindow.events import Event
from tokenwindow.replies import ReplyAssembler
from tokenwindow.settings import StrategyName

STATELESS_PREFIX = "stateless-"
SESSION_HEADER = "X-Session-Id"
SessionHeader = Annotated[
    str | None,
    Header(
        alias=SESSION_HEADER,
        pattern=SESSION_ID_PATTERN.pattern,
        description="Session to continue; without it the request is stateless.",
    ),
]
"""The header that makes an SDK-compatible request part of a session."""


class TurnOptions(TypedDict, total=False):
    """How to answer a turn: the keyword arguments of the client's turn methods."""

    model: str | None
    temperature: float | None
    max_tokens: int | None
    strategy: StrategyName | None
    params: dict[str, Any] | None
    history: bool
    """The request is the caller's whole conversation (OpenAI and Anthropic routes)."""


@dataclass(frozen=True)
class Turn:
    session_id: str
    """The stored session id (tenant prefix included)."""
    turn_id: str
    from_id: str
    """The session stream's last entry before the turn was queued: its events come after."""
    public_id: str | None
    """The session id as the caller knows it; ``None`` for a stateless request."""

    def headers(self) -> dict[str, str]:
        """Response headers a caller needs to reconnect to this turn's events."""
        headers = {"X-Turn-Id": self.turn_id}
        if self.public_id is not None:
            headers[SESSION_HEADER] = self.public_id
        return headers


async def start_turn(
    gateway: Gateway,
    caller: Caller,
    session: str | None,
    messages: list[dict[str, Any]],
    options: TurnOptions,
    *,
    field: str = "session_id",
) -> Turn:
    """Admit and enqueue a turn without waiting for it; ``session=None`` is stateless."""
    await gateway.queues.admit(gateway.settings.max_queue_depth)
    client = gateway.client
    if session is None:
        model = options.get("model") or client.default_model()
        messages = await gateway.stateless.fit(model, messages)
        stored = caller.internal(f"{STATELESS_PREFIX}{uuid.uuid4().hex}")
    else:
        stored = caller.internal(session, field)
    from_id = await client.last_event_id(stored)
    turn_id = await client.submit_turn(stored, messages, **options)
    return Turn(stored, turn_id, from_id, session)


async def turn_events(gateway: Gateway, turn: Turn) -> AsyncIterator[Event]:
    """The turn's events from its start; ends after its terminal event."""
    try:
        async for event in gateway.client.subscribe(
            turn.session_id, turn.from_id, turn_id=turn.turn_id, timeout=DEFAULT_TIMEOUT_SECONDS
        ):
            yield event
    finally:
        if turn.public_id is None:
            gateway.spawn(_forget(gateway, turn))


async def _forget(gateway: Gateway, turn: Turn) -> None:
    """Delete a stateless turn's session once the turn has ended (even if no one listens)."""
    try:
        await gateway.client.wait_for_turn(
            turn.session_id, turn.turn_id, from_id=turn.from_id, timeout=DEFAULT_TIMEOUT_SECONDS
        )
    finally:
        await gateway.client.delete_session(turn.session_id)


async def whole_reply(gateway: Gateway, turn: Turn) -> ReplyAssembler:
    """The finished reply; raises ``TurnFailedError`` when the turn fails."""
    reply = ReplyAssembler()
    async for event in turn_events(gateway, turn):
        reply.feed(event)
    return reply
