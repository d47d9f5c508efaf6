"""A worker killed with SIGKILL mid-stream: the turn completes after redelivery, exactly once."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_REDIS_URL
from tests.fakes.server import FakeProviderServer
from tests.harness import WorkerProcess
from tests.tasks.conftest import BIG_MODEL, models_file
from tokenwindow.client import TokenManagementClient
from tokenwindow.events import EventType
from tokenwindow.models import get_registry
from tokenwindow.settings import get_settings

pytestmark = pytest.mark.slow

SHORT_LIMITS = {
    # Redelivery waits for the visibility timeout (longest hard limit + margin): keep it short.
    "TOKENWINDOW_COMPLETION_SOFT_TIME_LIMIT": "8",
    "TOKENWINDOW_COMPLETION_TIME_LIMIT": "10",
    "TOKENWINDOW_SUMMARIZATION_SOFT_TIME_LIMIT": "6",
    "TOKENWINDOW_SUMMARIZATION_TIME_LIMIT": "8",
    "TOKENWINDOW_VISIBILITY_MARGIN_SECONDS": "2",
}


def test_killed_worker_mid_stream_redelivers_without_duplicate_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_client: Any
) -> None:
    reply = " ".join(f"word{n}" for n in range(60))
    with FakeProviderServer() as provider:
        env = {
            "REDIS_URL": TEST_REDIS_URL,
            "TOKENWINDOW_MODELS_FILE": str(models_file(tmp_path / "m.yaml", provider)),
            **SHORT_LIMITS,
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        get_registry.cache_clear()
        provider.configure(token_delay=0.05)
        provider.queue_replies(reply, reply)
        first = WorkerProcess(env, log_path=tmp_path / "w1.log").start()
        second = WorkerProcess(env, log_path=tmp_path / "w2.log")
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
                        second.start()
                return events, await client.get_transcript(sid)

        try:
            events, transcript = asyncio.run(scenario())
        finally:
            first.kill()
            second.stop()
            get_settings.cache_clear()
            get_registry.cache_clear()
        assert len(provider.requests) == 2, "the turn was generated again after the kill"

    assert events[-1]["type"] == EventType.TURN_COMPLETED
    assert not [e for e in events if e["type"] == EventType.TURN_RESTARTED]
    text = "".join(e["text"] for e in events if e["type"] == EventType.TOKEN)
    assert text == reply, "subscribers saw every token exactly once"
    assert transcript == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": reply},
    ]
