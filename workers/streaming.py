"""Streaming one reply on the engine's loop: provider deltas in, coalesced events out.

What an attempt sends is decided by ``workers.reply.ReplyTracker`` (exactly-once across
redeliveries); when it goes out is the publisher's clock. The reply is returned only once every
event is in Redis, so the terminal event that follows can never overtake a token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenwindow.messages import Message
from tokenwindow.models import ModelSpec
from tokenwindow.settings import Settings
from workers.engine import Engine
from workers.ledger import LeaseLostError
from workers.llm import CompletionUsage
from workers.provider_stream import StreamDelta, open_stream
from workers.reply import ReplyTracker


@dataclass(frozen=True)
class Reply:
    """A finished reply and what the provider said about it."""

    text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    usage: CompletionUsage | None = None
    first_delta_at: float | None = None

    def message(self) -> Message:
        if self.tool_calls:
            return {
                "role": "assistant",
                "content": self.text or None,
                "tool_calls": self.tool_calls,  # type: ignore[typeddict-item]
            }
        return {"role": "assistant", "content": self.text}

    def summary(self) -> dict[str, Any]:
        """Fields of the ``turn_completed`` event (usage only when the provider reported it)."""
        fields: dict[str, Any] = {"chars": len(self.text), "finish_reason": self.finish_reason}
        if self.tool_calls:
            fields["tool_calls"] = self.tool_calls
        if self.usage is not None:
            fields["prompt_tokens"] = self.usage.prompt_tokens
            fields["completion_tokens"] = self.usage.completion_tokens
        return fields


def lease_lost(lease: asyncio.Future[None]) -> bool:
    """``keep_lease`` returns only when another execution holds the turn's lease now."""
    return lease.done() and not lease.cancelled() and lease.exception() is None


@dataclass(frozen=True)
class Attempt:
    """Who is streaming what: the turn, its attempt number and what earlier ones published."""

    session_id: str
    turn_id: str
    owner: str
    """The execution holding the generation lease."""
    number: int
    published: str
    tools_published: bool


async def stream_reply(
    engine: Engine,
    attempt: Attempt,
    spec: ModelSpec,
    messages: list[Message],
    params: Mapping[str, Any],
    *,
    settings: Settings,
) -> Reply:
    """Stream one attempt within the completion's soft time limit (``TimeoutError`` past it),
    renewing the lease meanwhile (``LeaseLostError`` if another task took the turn over)."""
    outbox = engine.publisher.outbox(attempt.session_id, attempt.turn_id, attempt.number)
    tracker = ReplyTracker(attempt.published, attempt.tools_published)
    first: list[float] = []

    def publish(delta: StreamDelta) -> None:
        if not first:
            first.append(time.time())
        outbox.put(tracker.feed(delta))

    lease = asyncio.ensure_future(
        engine.keep_lease(attempt.session_id, attempt.turn_id, attempt.owner)
    )
    streaming = asyncio.current_task()
    assert streaming is not None
    lease.add_done_callback(lambda _: lease_lost(lease) and streaming.cancel())
    try:
        async with asyncio.timeout(settings.completion_soft_time_limit):
            stream = await open_stream(spec, messages, params, settings=settings)
            async with stream:
                await stream.pump(publish)
            outbox.put(tracker.end())
            await outbox.drain()
    except asyncio.CancelledError:
        if not lease_lost(lease):
            raise
        streaming.uncancel()
        raise LeaseLostError(attempt.turn_id) from None
    finally:
        lease.cancel()
    return Reply(
        text=tracker.text,
        tool_calls=tracker.tool_calls(),
        finish_reason=stream.finish_reason,
        usage=stream.usage,
        first_delta_at=first[0] if first else None,
    )
