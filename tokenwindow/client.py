"""The client other services use: submit turns, stream replies, manage sessions.

It needs only Redis (and the broker, usually the same Redis): tasks are sent by name, so a
producer never imports worker code. Events are read from the session's Redis Stream, which is
ordered, replayable by entry id and exactly-once per reader; the pub/sub channel carries the same
events for consumers that only want live fan-out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal, overload

import redis.asyncio
import redis.exceptions

from tokenwindow.constants import (
    LATENCY_KEY,
    METRICS_KEY,
    SESSIONS_INDEX_KEY,
    TASK_INGEST_TURN,
    events_stream_key,
    session_key,
    transcript_key,
    turn_key,
    turn_order_key,
    turn_text_key,
)
from tokenwindow.counting import count_request
from tokenwindow.errors import TokenWindowError, TurnFailedError
from tokenwindow.eventlog import AsyncEventLog
from tokenwindow.events import Event, EventType, decode_event, is_terminal
from tokenwindow.messages import Message
from tokenwindow.metrics import active_since, build_snapshot
from tokenwindow.models import OFFLINE_MODEL, get_registry
from tokenwindow.producer import TaskProducer
from tokenwindow.protocol import TurnRequest, check_session_id
from tokenwindow.sessions import Entry, decode_hash, session_summary
from tokenwindow.settings import Settings, StrategyName, get_settings
from tokenwindow.topology import async_redis

READ_BLOCK_MS = 1_000
"""How long one blocking read waits; bounds how quickly a cancelled subscriber notices."""
DEFAULT_TIMEOUT_SECONDS = 300.0
RECONNECT_DELAY_SECONDS = 0.5
"""Pause between reads while Redis is unreachable; the subscription's timeout still applies."""


class TokenManagementClient:
    """Async client. ``async with TokenManagementClient() as client: ...``."""

    def __init__(self, redis_url: str | None = None, *, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        if redis_url:
            self.settings = self.settings.model_copy(update={"redis_url": redis_url})
        self.redis = async_redis(
            self.settings,
            decode_responses=True,
            max_connections=self.settings.client_max_connections,
        )
        self._events = AsyncEventLog(
            self.redis,
            maxlen=self.settings.stream_maxlen,
            ttl_seconds=self.settings.session_ttl_seconds,
        )
        self._producer = TaskProducer.for_settings(self.settings)

    async def __aenter__(self) -> TokenManagementClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.redis.aclose()
        self._producer.close()

    # --- turns -----------------------------------------------------------------------------
    def default_model(self) -> str:
        """The configured default, else a real model when a key is set, else the offline one."""
        if self.settings.default_model:
            return self.settings.default_model
        if self.settings.openai_api_key:
            return "gpt-4o"
        if self.settings.anthropic_api_key:
            return "claude-3-5-sonnet"
        if self.settings.google_api_key:
            return "gemini-1.5-pro"
        return OFFLINE_MODEL

    async def submit_turn(
        self,
        session_id: str,
        messages: Sequence[Message] | Sequence[dict[str, Any]],
        model: str | None = None,
        *,
        turn_id: str | None = None,
        strategy: StrategyName | str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> str:
        """Validate and enqueue a turn; returns its id at once."""
        fields: dict[str, Any] = {
            "session_id": session_id,
            "messages": list(messages),
            "model": model or self.default_model(),
            "strategy": strategy,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if turn_id is not None:
            fields["turn_id"] = turn_id
        turn = TurnRequest.parse(fields)
        get_registry().get(turn.model)  # an unknown model fails here, not in a worker
        await self._events.publish(
            turn.session_id, turn.turn_id, EventType.TURN_QUEUED, model=turn.model
        )
        payload = turn.model_dump(mode="json", exclude_none=True)
        await asyncio.to_thread(self._producer.send, TASK_INGEST_TURN, payload)
        return turn.turn_id

    @overload
    async def create_completion(
        self,
        session_id: str,
        messages: Sequence[Message] | Sequence[dict[str, Any]],
        model: str | None = None,
        *,
        stream: Literal[True],
        temperature: float | None = None,
        max_tokens: int | None = None,
        strategy: StrategyName | str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> AsyncIterator[str]: ...

    @overload
    async def create_completion(
        self,
        session_id: str,
        messages: Sequence[Message] | Sequence[dict[str, Any]],
        model: str | None = None,
        *,
        stream: Literal[False] = False,
        temperature: float | None = None,
        max_tokens: int | None = None,
        strategy: StrategyName | str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> dict[str, Any]: ...

    async def create_completion(
        self,
        session_id: str,
        messages: Sequence[Message] | Sequence[dict[str, Any]],
        model: str | None = None,
        *,
        stream: bool = False,
        temperature: float | None = None,
        max_tokens: int | None = None,
        strategy: StrategyName | str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> AsyncIterator[str] | dict[str, Any]:
        """Submit a turn and stream its reply text (``stream=True``) or return it whole."""
        check_session_id(session_id)
        start = await self.last_event_id(session_id)
        turn_id = await self.submit_turn(
            session_id,
            messages,
            model,
            strategy=strategy,
            temperature=temperature,
            max_tokens=max_tokens,
        )
        chunks = self._reply_text(session_id, turn_id, start, timeout)
        if stream:
            return chunks
        text = "".join([chunk async for chunk in chunks])
        return {
            "session_id": session_id,
            "turn_id": turn_id,
            "content": text,
            "model": model or self.default_model(),
        }

    async def _reply_text(
        self, session_id: str, turn_id: str, from_id: str, timeout: float
    ) -> AsyncIterator[str]:
        """Text deltas of one turn; raises ``TurnFailedError`` if the turn fails."""
        async for event in self.subscribe(
            session_id, from_id=from_id, turn_id=turn_id, timeout=timeout
        ):
            kind = event["type"]
            if kind == EventType.TOKEN:
                yield event["text"]
            elif kind == EventType.TURN_FAILED:
                raise TurnFailedError(event.get("code", "error"), event.get("message", ""))
            elif kind == EventType.TURN_COMPLETED:
                return

    async def wait_for_turn(
        self,
        session_id: str,
        turn_id: str,
        *,
        from_id: str = "0",
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> Event:
        """The turn's terminal event (``turn_completed`` or ``turn_failed``)."""
        async for event in self.subscribe(
            session_id, from_id=from_id, turn_id=turn_id, timeout=timeout
        ):
            if is_terminal(event):
                return event
        raise TimeoutError(f"turn {turn_id} did not finish within {timeout} s")

    # --- events ----------------------------------------------------------------------------
    async def last_event_id(self, session_id: str) -> str:
        """The newest entry id of the session's stream ("0" if empty): a replay start point."""
        newest = await self.redis.xrevrange(events_stream_key(session_id), count=1)
        return str(newest[0][0]) if newest else "0"

    async def subscribe(
        self,
        session_id: str,
        from_id: str | None = None,
        *,
        turn_id: str | None = None,
        timeout: float | None = None,
        stop_after_turn: bool = True,
    ) -> AsyncIterator[Event]:
        """Events of a session, in order, each exactly once, from after ``from_id``.

        ``from_id=None`` starts with new events only; ``"0"`` replays everything kept. With
        ``turn_id``, only that turn's events are yielded and the iterator ends after its
        terminal event (unless ``stop_after_turn`` is False).
        """
        check_session_id(session_id)
        key = events_stream_key(session_id)
        cursor = from_id or await self.last_event_id(session_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            try:
                reply: list[tuple[str, list[tuple[str, dict[str, str]]]]] = await self.redis.xread(
                    {key: cursor}, block=READ_BLOCK_MS, count=500
                )  # type: ignore[assignment]
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                # Redis is restarting or unreachable: the cursor resumes exactly where we were.
                await asyncio.sleep(RECONNECT_DELAY_SECONDS)
                continue
            for _, entries in reply:
                for entry_id, fields in entries:
                    cursor = entry_id
                    event = decode_event(fields["event"], entry_id)
                    if turn_id is not None and event.get("turn_id") != turn_id:
                        continue
                    yield event
                    if turn_id is not None and stop_after_turn and is_terminal(event):
                        return
        raise TimeoutError(f"no terminal event for session {session_id} within {timeout} s")

    # --- sessions --------------------------------------------------------------------------
    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        meta = decode_hash(await self.redis.hgetall(session_key(check_session_id(session_id))))
        return session_summary(session_id, meta) if meta else None

    async def get_transcript(self, session_id: str) -> list[Message]:
        """Every message of the session, as sent and replied: compression never trims this."""
        raw = await self.redis.lrange(transcript_key(check_session_id(session_id)), 0, -1)
        return [Entry.loads(item).message for item in raw]

    async def list_sessions(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Sessions by most recent activity; sessions past their retention are dropped here."""
        expired_before = time.time() - self.settings.session_ttl_seconds
        await self.redis.zremrangebyscore(SESSIONS_INDEX_KEY, "-inf", expired_before)
        ids: list[str] = await self.redis.zrevrange(  # type: ignore[assignment]
            SESSIONS_INDEX_KEY, offset, offset + limit - 1
        )
        pipe = self.redis.pipeline(transaction=False)
        for session_id in ids:
            pipe.hgetall(session_key(session_id))
        metas = await pipe.execute()
        return [session_summary(s, decode_hash(m)) for s, m in zip(ids, metas, strict=True) if m]

    async def delete_session(self, session_id: str) -> bool:
        """Remove everything stored for the session; True if it existed."""
        check_session_id(session_id)
        turn_keys = [k async for k in self.redis.scan_iter(match=turn_key(session_id, "*"))]
        text_keys = [k async for k in self.redis.scan_iter(match=turn_text_key(session_id, "*"))]
        pipe = self.redis.pipeline()
        pipe.delete(
            session_key(session_id),
            transcript_key(session_id),
            events_stream_key(session_id),
            turn_order_key(session_id),
            *turn_keys,
            *text_keys,
        )
        pipe.zrem(SESSIONS_INDEX_KEY, session_id)
        deleted, _ = await pipe.execute()
        return bool(deleted)

    # --- counting, models, metrics ---------------------------------------------------------
    async def count_tokens(
        self,
        model: str | None = None,
        *,
        text: str | None = None,
        messages: Sequence[Message] | Sequence[dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Local count: the same function the ``count_tokens`` task and CLI call."""
        return await asyncio.to_thread(
            count_request,
            model or self.default_model(),
            text=text,
            messages=list(messages) if messages is not None else None,
            tools=tools,
        )

    def models(self) -> list[dict[str, Any]]:
        return [spec.public_dict() for spec in get_registry().all()]

    async def metrics(self) -> dict[str, Any]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(METRICS_KEY)
        pipe.hgetall(LATENCY_KEY)
        pipe.zcount(SESSIONS_INDEX_KEY, active_since(), "+inf")
        counters, latency, active = await pipe.execute()
        return build_snapshot(counters, latency, int(active))


__all__ = ["TokenManagementClient", "TokenWindowError", "TurnFailedError"]
