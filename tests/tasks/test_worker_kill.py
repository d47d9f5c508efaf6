"""A worker killed with SIGKILL mid-stream: the turn completes after redelivery, exactly once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.support import stack
from tests.conftest import TEST_REDIS_URL
from tests.stack import BIG_MODEL
from tokenwindow.client import TokenManagementClient
from tokenwindow.events import EventType

pytestmark = [pytest.mark.slow, pytest.mark.long]


def test_killed_worker_mid_stream_redelivers_without_duplicate_text(
    tmp_path: Path, redis_client: Any
) -> None:
    reply = " ".join(f"word{n}" for n in range(60))
    with stack(tmp_path, TEST_REDIS_URL) as s:
        s.provider.configure(token_delay=0.05)
        s.provider.queue_replies(reply, reply)
        first, second = s.worker(), s.worker(start=False)
        sid = f"kill-{uuid.uuid4().hex[:8]}"

        async def scenario() -> tuple[list[dict[str, Any]], list[Any]]:
            async with TokenManagementClient() as client:
                turn_id = await client.submit_turn(
                    sid, [{"role": "user", "content": "go"}], BIG_MODEL
                )
                events: list[dict[str, Any]] = []
                async for event in client.subscribe(sid, from_id="0", turn_id=turn_id, timeout=90):
                    events.append(event)
                    tokens = sum(e["type"] == EventType.TOKEN for e in events)
                    if tokens == 5 and first.process and first.process.poll() is None:
                        first.kill()
                        s.start(second)
                return events, await client.get_transcript(sid)

        events, transcript = asyncio.run(scenario())
        assert len(s.provider.requests) == 2, "the turn was generated again after the kill"

    assert events[-1]["type"] == EventType.TURN_COMPLETED
    assert not [e for e in events if e["type"] == EventType.TURN_RESTARTED]
    text = "".join(e["text"] for e in events if e["type"] == EventType.TOKEN)
    assert text == reply, "subscribers saw every token exactly once"
    assert transcript == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": reply},
    ]
