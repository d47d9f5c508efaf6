"""Starting a turn for a route: admission, then the client's own submit.

Streaming routes need the turn's events with their stream ids, so they take the stream position
first and subscribe from it, exactly as ``TokenManagementClient.create_completion`` does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypedDict

from gateway.state import Gateway
from tokenwindow.client import DEFAULT_TIMEOUT_SECONDS
from tokenwindow.events import Event
from tokenwindow.protocol import check_session_id
from tokenwindow.settings import StrategyName


class TurnOptions(TypedDict, total=False):
    """How to answer a turn: the keyword arguments of the client's turn methods."""

    model: str | None
    temperature: float | None
    max_tokens: int | None
    strategy: StrategyName | None


@dataclass(frozen=True)
class Turn:
    session_id: str
    turn_id: str
    from_id: str
    """The session stream's last entry before the turn was queued: its events come after."""

    def headers(self) -> dict[str, str]:
        """Response headers a caller needs to reconnect to this turn's events."""
        return {"X-Session-Id": self.session_id, "X-Turn-Id": self.turn_id}


async def admit(gateway: Gateway) -> None:
    await gateway.queues.admit(gateway.settings.max_queue_depth)


async def start_turn(
    gateway: Gateway, session_id: str, messages: list[dict[str, Any]], options: TurnOptions
) -> Turn:
    """Admit and enqueue a turn without waiting for it."""
    await admit(gateway)
    client = gateway.client
    from_id = await client.last_event_id(check_session_id(session_id))
    turn_id = await client.submit_turn(session_id, messages, **options)
    return Turn(session_id, turn_id, from_id)


def turn_events(gateway: Gateway, turn: Turn) -> AsyncIterator[Event]:
    """The turn's events from its start; ends after its terminal event."""
    return gateway.client.subscribe(
        turn.session_id, turn.from_id, turn_id=turn.turn_id, timeout=DEFAULT_TIMEOUT_SECONDS
    )
