"""The client other services use: submit turns, stream replies, manage sessions.

It needs only Redis (and the broker, usually the same Redis): tasks are sent by name, so a
producer never imports worker code. Events are read from the session's Redis Stream, which is
ordered, replayable by entry id and exactly-once per reader; the pub/sub channel carries the same
events for consumers that only want live fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, Literal, overload

import redis.asyncio
import redis.asyncio.cluster

from tokenwindow.constants import (
    LATENCY_KEY,
    METRICS_KEY,
    SESSIONS_INDEX_KEY,
    STREAM_ID_PATTERN,
    TASK_INGEST_TURN,
    events_stream_key,
    session_key,
    session_keys,
    transcript_key,
)
from tokenwindow.counting import count_request
from tokenwindow.errors import InvalidInputError, TokenWindowError, TurnFailedError
from tokenwindow.eventlog import AsyncEventLog
from tokenwindow.events import Event, EventType, decode_event, is_terminal
from tokenwindow.fanin import (
    RECONNECT_DELAY_SECONDS,
    UNREACHABLE,
    Reply,
    StreamEntry,
    StreamFanIn,
)
from tokenwindow.messages import Message
from tokenwindow.metrics import active_since, build_snapshot
from tokenwindow.models import OFFLINE_MODEL, get_registry
from tokenwindow.params import check_chat_params
from tokenwindow.producer import TaskProducer
from tokenwindow.protocol import TurnRequest, check_session_id
from tokenwindow.replies import RESTARTED, RESTARTED_MESSAGE, ReplyAssembler
from tokenwindow.sessions import Entry, decode_hash, session_summary
from tokenwindow.settings import Settings, StrategyName, get_settings
from tokenwindow.topology import async_redis

READ_BLOCK_MS = 1_000
"""How long one blocking read waits; bounds how long it outlives the last subscription."""
READ_COUNT = 500
"""Entries per stream per read."""
DEFAULT_TIMEOUT_SECONDS = 300.0
INDEX_PAGE = 1_000
"""Session ids read per round trip when listing one namespace of the activity index."""


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
        self._fan_in: StreamFanIn | None = None

    async def __aenter__(self) -> TokenManagementClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._fan_in is not None:
            await self._fan_in.close()
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
        params: dict[str, Any] | None = None,
        history: bool = False,
    ) -> str:
        """Validate and enqueue a turn; returns its id at once.

        ``params`` carries further chat parameters for the provider call (``tools``,
        ``tool_choice``, ``top_p``, ...), sent to the worker as they are. ``history`` says
        ``messages`` is the whole conversation: an edit or a regenerate then opens a branch.
        """
        fields: dict[str, Any] = {
            "session_id": session_id,
            "messages": list(messages),
            "model": model or self.default_model(),
            "strategy": strategy,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "params": params,
            "history": history,
        }
        if turn_id is not None:
            fields["turn_id"] = turn_id
        turn = TurnRequest.parse(fields)
        # An unknown model or an unsupported parameter fails here, not in a worker.
        check_chat_params(get_registry().get(turn.model), turn.params or {})
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
        params: dict[str, Any] | None = None,
        history: bool = False,
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
        params: dict[str, Any] | None = None,
        history: bool = False,
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
        params: dict[str, Any] | None = None,
        history: bool = False,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> AsyncIterator[str] | dict[str, Any]:
        """Submit a turn and stream its reply text (``stream=True``) or return it whole.

        The whole reply is a dict: ``content``, ``finish_reason`` and ``usage`` (the provider's
        ``prompt_tokens``/``completion_tokens``/``total_tokens``, ``None`` when it reported
        none) and ``tool_calls``. A ``turn_restarted`` drops the text of the abandoned attempt;
        a stream that had already yielded some of it raises ``TurnFailedError`` with code
        ``turn_restarted`` instead of joining two attempts.
        """
        check_session_id(session_id)
        start = await self.last_event_id(session_id)
        turn_id = await self.submit_turn(
            session_id,
            messages,
            model,
            strategy=strategy,
            temperature=temperature,
            max_tokens=max_tokens,
            params=params,
            history=history,
        )
        if stream:
            return self._reply_text(session_id, turn_id, start, timeout)
        reply = ReplyAssembler()
        async for event in self.subscribe(session_id, start, turn_id=turn_id, timeout=timeout):
            reply.feed(event)
        return {
            "session_id": session_id,
            "turn_id": turn_id,
            "model": model or self.default_model(),
            **reply.result(),
        }

    async def _reply_text(
        self, session_id: str, turn_id: str, from_id: str, timeout: float
    ) -> AsyncIterator[str]:
        """Text deltas of one turn; raises ``TurnFailedError`` if the turn fails, or if it
        restarts after some text was yielded (that text cannot be taken back)."""
        reply = ReplyAssembler()
        async for event in self.subscribe(
            session_id, from_id=from_id, turn_id=turn_id, timeout=timeout
        ):
            if event["type"] == EventType.TURN_RESTARTED and reply.parts:
                raise TurnFailedError(RESTARTED, RESTARTED_MESSAGE)
            reply.feed(event)
            if event["type"] == EventType.TOKEN:
                yield event["text"]

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
        if from_id is not None and not STREAM_ID_PATTERN.fullmatch(from_id):
            raise InvalidInputError(
                f"from_id: expected a stream entry id such as 1700000000000-0, got {from_id!r}"
            )
        cursor = from_id or await self.last_event_id(session_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        async with contextlib.aclosing(self._entries(key, cursor, deadline)) as entries:
            async for entry_id, fields in entries:
                event = decode_event(fields["event"], entry_id)
                if turn_id is not None and event.get("turn_id") != turn_id:
                    continue
                yield event
                if turn_id is not None and stop_after_turn and is_terminal(event):
                    return
        raise TimeoutError(f"no terminal event for session {session_id} within {timeout} s")

    def _entries(
        self, key: str, cursor: str, deadline: float | None
    ) -> AsyncGenerator[StreamEntry, None]:
        """Entries of one stream after ``cursor``: through the client's shared read, or on
        Redis Cluster through a read of their own (one read may name keys of one slot)."""
        if isinstance(self.redis, redis.asyncio.cluster.RedisCluster):
            return self._read_alone(key, cursor, deadline)
        loop = asyncio.get_running_loop()
        if self._fan_in is None or self._fan_in.loop is not loop:
            self._fan_in = StreamFanIn(self.redis, block_ms=READ_BLOCK_MS, count=READ_COUNT)
        return self._fan_in.follow(key, cursor, deadline)

    async def _read_alone(
        self, key: str, cursor: str, deadline: float | None
    ) -> AsyncGenerator[StreamEntry, None]:
        while deadline is None or time.monotonic() < deadline:
            try:
                reply: Reply = await self.redis.xread(
                    {key: cursor}, block=READ_BLOCK_MS, count=READ_COUNT
                )  # type: ignore[assignment]
            except UNREACHABLE:
                # Redis is restarting or unreachable: the cursor resumes exactly where we were.
                await asyncio.sleep(RECONNECT_DELAY_SECONDS)
                continue
            for _, entries in reply:
                for entry in entries:
                    cursor = entry[0]
                    yield entry

    # --- sessions --------------------------------------------------------------------------
    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        meta = decode_hash(await self.redis.hgetall(session_key(check_session_id(session_id))))
        return session_summary(session_id, meta) if meta else None

    async def get_transcript(self, session_id: str) -> list[Message]:
        """Every message of the session, as sent and replied: compression never trims this."""
        raw = await self.redis.lrange(transcript_key(check_session_id(session_id)), 0, -1)
        return [Entry.loads(item).message for item in raw]

    async def list_sessions(
        self, limit: int = 100, offset: int = 0, *, prefix: str = ""
    ) -> list[dict[str, Any]]:
        """Sessions by most recent activity; sessions past their retention are dropped here.

        ``prefix`` keeps only session ids that start with it (a tenant's namespace); ``limit``
        and ``offset`` then count only those.
        """
        expired_before = time.time() - self.settings.session_ttl_seconds
        await self.redis.zremrangebyscore(SESSIONS_INDEX_KEY, "-inf", expired_before)
        ids = await self._session_ids(limit, offset, prefix)
        pipe = self.redis.pipeline(transaction=False)
        for session_id in ids:
            pipe.hgetall(session_key(session_id))
        metas = await pipe.execute()
        return [session_summary(s, decode_hash(m)) for s, m in zip(ids, metas, strict=True) if m]

    async def _session_ids(self, limit: int, offset: int, prefix: str) -> list[str]:
        """Ids from the activity index, newest first, read in pages until ``limit`` match."""
        if not prefix:
            found: list[str] = await self.redis.zrevrange(  # type: ignore[assignment]
                SESSIONS_INDEX_KEY, offset, offset + limit - 1
            )
            return found
        matched: list[str] = []
        start = 0
        while len(matched) < offset + limit:
            page: list[str] = await self.redis.zrevrange(  # type: ignore[assignment]
                SESSIONS_INDEX_KEY, start, start + INDEX_PAGE - 1
            )
            matched += [s for s in page if s.startswith(prefix)]
            if len(page) < INDEX_PAGE:
                break
            start += INDEX_PAGE
        return matched[offset : offset + limit]

    async def delete_session(self, session_id: str) -> bool:
        """Remove everything stored for the session; True if it existed."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(*session_keys(check_session_id(session_id)))
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
