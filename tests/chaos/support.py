"""Building blocks for fault tests and the chaos runner: a stack with short limits, an audit.

``stack`` is ``tests.stack.Stack`` with the short time limits fault scenarios need (a killed
worker's turn is redelivered, and taken over, within seconds). ``audit`` reads back what the
service stored and streamed and counts lost and duplicated turns.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.fakes.server import FakeProviderServer
from tests.stack import BIG_MODEL, Stack
from tokenwindow.client import TokenManagementClient
from tokenwindow.constants import events_stream_key, transcript_key, turns_key
from tokenwindow.events import EventType, is_terminal

SHORT_LIMITS = {
    # Redelivery after a kill waits for the visibility timeout (longest hard limit + margin).
    "TOKENWINDOW_COMPLETION_SOFT_TIME_LIMIT": "8",
    "TOKENWINDOW_COMPLETION_TIME_LIMIT": "10",
    "TOKENWINDOW_SUMMARIZATION_SOFT_TIME_LIMIT": "6",
    "TOKENWINDOW_SUMMARIZATION_TIME_LIMIT": "8",
    "TOKENWINDOW_VISIBILITY_MARGIN_SECONDS": "2",
    # A redelivered turn takes over a killed worker's generation lease this soon (default 30).
    "TOKENWINDOW_LEASE_SECONDS": "5",
    "TOKENWINDOW_PROVIDER_TIMEOUT_SECONDS": "5",
    "TOKENWINDOW_MAX_RETRIES": "4",
}


def stack(
    workdir: Path, redis_url: str, *, broker_url: str | None = None, **overrides: str
) -> Stack[FakeProviderServer]:
    """A stack with the fault scenarios' short limits (``overrides`` win) on ``redis_url``."""
    env = {**SHORT_LIMITS, **overrides}
    if broker_url:
        env["BROKER_URL"] = broker_url
    return Stack(redis_url, provider=FakeProviderServer, workdir=workdir, env=env)


# --- driving turns -------------------------------------------------------------------------------
@dataclass
class TurnRecord:
    session_id: str
    turn_id: str
    text: str
    status: str = "lost"
    code: str | None = None
    started: float = 0.0
    finished: float = 0.0

    @property
    def latency(self) -> float:
        return self.finished - self.started


def new_session(prefix: str = "chaos") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def run_turn(
    client: TokenManagementClient,
    session_id: str,
    text: str,
    model: str = BIG_MODEL,
    *,
    timeout: float = 60.0,
    history: list[dict[str, Any]] | None = None,
) -> TurnRecord:
    """Submit one turn and wait for its terminal event; a timeout leaves it ``lost``."""
    start_id = await client.last_event_id(session_id)
    messages = [*(history or []), {"role": "user", "content": text}]
    record = TurnRecord(session_id, "", text, started=time.monotonic())
    record.turn_id = await client.submit_turn(session_id, messages, model)
    try:
        event = await client.wait_for_turn(
            session_id, record.turn_id, from_id=start_id, timeout=timeout
        )
    except TimeoutError:
        return record
    record.finished = time.monotonic()
    record.status = "completed" if event["type"] == EventType.TURN_COMPLETED else "failed"
    record.code = event.get("code")
    return record


async def run_sessions(
    client: TokenManagementClient,
    sessions: list[str],
    turns: int,
    *,
    model: str = BIG_MODEL,
    parallel: int = 200,
    timeout: float = 60.0,
) -> list[TurnRecord]:
    """Each session's turns in order; up to ``parallel`` sessions at a time."""
    gate = asyncio.Semaphore(parallel)
    records: list[TurnRecord] = []

    async def one(session_id: str) -> None:
        async with gate:
            for n in range(turns):
                text = f"turn {n} of {session_id}"
                records.append(await run_turn(client, session_id, text, model, timeout=timeout))

    await asyncio.gather(*(one(s) for s in sessions))
    return records


# --- auditing ------------------------------------------------------------------------------------
@dataclass
class Audit:
    sent: int
    completed: int
    failed: int
    lost: int
    duplicated: int
    problems: list[str]


def streamed_text(events: list[dict[str, Any]], turn_id: str) -> str:
    """What a subscriber shows for a turn: token text, restarted on ``turn_restarted``."""
    text = ""
    for event in events:
        if event.get("turn_id") != turn_id:
            continue
        if event["type"] == EventType.TURN_RESTARTED:
            text = ""
        elif event["type"] == EventType.TOKEN:
            text += event["text"]
    return text


def audit(client: redis.Redis, records: list[TurnRecord]) -> Audit:
    """Compare turns with the transcript and the event stream.

    Lost: no terminal event, or a completed turn whose user message or reply is missing.
    Duplicated: a user message or reply stored twice, more than one terminal event, or streamed
    text that differs from the stored reply (tokens shown twice).
    """
    problems: list[str] = []
    by_session: dict[str, list[TurnRecord]] = {}
    for record in records:
        by_session.setdefault(record.session_id, []).append(record)
    lost = duplicated = 0
    for session_id, turns in by_session.items():
        raw = client.lrange(transcript_key(session_id), 0, -1)
        entries = [json.loads(item) for item in raw]
        events = [
            json.loads(fields[b"event"])
            for _, fields in client.xrange(events_stream_key(session_id))
        ]
        for record in turns:
            mine = [e for e in entries if e["turn_id"] == record.turn_id]
            asked = {"role": "user", "content": record.text}
            users = [n for n, e in enumerate(mine) if e["message"] == asked]
            after = mine[users[0] + 1 :] if users else []
            replies = [
                e["message"]["content"] for e in after if e["message"]["role"] == "assistant"
            ]
            terminal = [e for e in events if e["turn_id"] == record.turn_id and is_terminal(e)]
            where = f"{session_id}/{record.turn_id}"
            if len(users) > 1 or len(replies) > 1 or len(terminal) > 1:
                duplicated += 1
                problems.append(f"{where}: stored or finished more than once")
                continue
            if record.status == "lost":
                lost += 1
                ledger = client.hget(turns_key(session_id), record.turn_id)
                state = json.loads(ledger).get("state") if ledger else "new"
                problems.append(f"{where}: no terminal event (ledger: {state})")
            elif record.status == "completed":
                if not users or not replies:
                    lost += 1
                    problems.append(f"{where}: completed but missing from the transcript")
                elif streamed_text(events, record.turn_id) != replies[0]:
                    duplicated += 1
                    problems.append(f"{where}: streamed text differs from the stored reply")
    return Audit(
        sent=len(records),
        completed=sum(r.status == "completed" for r in records),
        failed=sum(r.status == "failed" for r in records),
        lost=lost,
        duplicated=duplicated,
        problems=problems,
    )


def generation_attempts(client: redis.Redis, records: list[TurnRecord]) -> int:
    """How many times the ledger let a task start generating these turns (``begin``s).

    Every provider request must be one of them: a turn whose stream a kill cut is begun, and
    requested, again; an ingest or a redelivery that the ledger refuses requests nothing.
    """
    total = 0
    for record in records:
        raw = client.hget(turns_key(record.session_id), record.turn_id)
        total += int(json.loads(raw).get("attempt", 0)) if raw else 0
    return total


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[98]
