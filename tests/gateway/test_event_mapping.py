"""How the SDK-compatible routes render a turn's events, with the events scripted by the test.

No worker serves this gateway's queue: each request's turn stays queued, and the test publishes
that turn's events into the session stream the way a worker does. This covers the event types a
worker may send (tool-call fragments, restarts) whatever the worker supports today.
"""

from __future__ import annotations

import base64
import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import anthropic
import httpx
import openai
import pytest
import redis
import yaml

from tests.conftest import TEST_REDIS_URL
from tests.gateway.conftest import GatewayProcess, workerless
from tokenwindow.constants import QUEUE_COMPLETIONS, events_stream_key
from tokenwindow.eventlog import EventLog
from tokenwindow.events import EventType
from tokenwindow.models import get_registry
from tokenwindow.settings import get_settings
from tokenwindow.sync_client import SyncTokenManagementClient

pytestmark = pytest.mark.slow

MODEL = "scripted-gpt"
CALLS = [
    {
        "id": "call_a",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"q":"tea"}'},
    },
    {"id": "call_b", "type": "function", "function": {"name": "clock", "arguments": "{}"}},
]
TOOLS = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}},
]
Script = list[tuple[str, dict[str, Any]]]
TOOL_SCRIPT: Script = [
    ("turn_started", {}),
    (
        "tool_call",
        {"index": 0, "call_id": "call_a", "name": "lookup", "arguments": '{"q":', "attempt": 1},
    ),
    (
        "tool_call",
        {"index": 1, "call_id": "call_b", "name": "clock", "arguments": "{}", "attempt": 1},
    ),
    ("tool_call", {"index": 0, "call_id": None, "name": None, "arguments": '"tea"}', "attempt": 1}),
    (
        "turn_completed",
        {
            "finish_reason": "tool_calls",
            "tool_calls": CALLS,
            "prompt_tokens": 9,
            "completion_tokens": 4,
        },
    ),
]
RESTART_SCRIPT: Script = [
    ("token", {"text": "abandoned ", "attempt": 1}),
    ("turn_restarted", {"attempt": 2}),
    ("token", {"text": "kept", "attempt": 2}),
    ("turn_completed", {"finish_reason": "stop"}),
]


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """An open gateway on the test database with no worker behind it."""
    tmp = tmp_path_factory.mktemp("idle")
    models = tmp / "models.yaml"
    entry = {
        "model_name": MODEL,
        "litellm_params": {"model": "openai/gpt-4o", "api_base": "http://127.0.0.1:9/v1"},
        "model_info": {"max_input_tokens": 128_000, "max_output_tokens": 1_000},
    }
    models.write_text(yaml.safe_dump({"model_list": [entry]}), encoding="utf-8")
    env = {
        "TOKENWINDOW_MODELS_FILE": str(models),
        "TOKENWINDOW_GATEWAY_ALLOW_OPEN": "true",
        "TOKENWINDOW_SSE_PING_SECONDS": "0.05",
    }
    with workerless(env, tmp / "gateway.log") as process:
        yield process


def play_when_queued(sid: str, script: Script) -> threading.Thread:
    """Publish ``script`` as the events of the session's next queued turn, from a thread."""
    thread = threading.Thread(target=play, args=(sid, script), daemon=True)
    thread.start()
    return thread


def play(sid: str, script: Script) -> None:
    """Publish ``script`` as the events of the session's first queued turn."""
    store = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    log = EventLog(store, maxlen=1000, ttl_seconds=600)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        entries = store.xrange(events_stream_key(sid))
        queued = [json.loads(f["event"]) for _, f in entries]
        if queued:
            break
        time.sleep(0.05)
    turn_id = queued[0]["turn_id"]
    for kind, fields in script:
        log.publish(sid, turn_id, cast(EventType, kind), **fields)
    store.close()


def queued_task(sid: str) -> dict[str, Any]:
    """The keyword arguments of the session's queued ingest task, as the broker holds them."""
    with redis.Redis.from_url(TEST_REDIS_URL) as store:
        for raw in store.lrange(QUEUE_COMPLETIONS, 0, -1):
            message = json.loads(raw)
            _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            if kwargs["session_id"] == sid:
                return cast(dict[str, Any], kwargs)
    raise AssertionError(f"no queued task for {sid}")


def scripted(idle: GatewayProcess, script: Script, call: Callable[[str], Any]) -> tuple[str, Any]:
    sid = f"ev-{uuid.uuid4().hex[:10]}"
    player = play_when_queued(sid, script)
    result = call(sid)
    player.join(timeout=30)
    return sid, result


def openai_client(idle: GatewayProcess, sid: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{idle.url}/v1",
        api_key="unused",
        max_retries=0,
        default_headers={"X-Session-Id": sid},
    )


def test_openai_stream_of_tool_calls(idle: GatewayProcess) -> None:
    def call(sid: str) -> list[Any]:
        stream = openai_client(idle, sid).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "tea?"}],
            tools=TOOLS,  # type: ignore[arg-type]
            tool_choice="auto",
            parallel_tool_calls=True,
            stream=True,
            stream_options={"include_usage": True},
        )
        return list(stream)

    sid, chunks = scripted(idle, TOOL_SCRIPT, call)
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert [(d.index, d.id, d.type) for d in deltas] == [
        (0, "call_a", "function"),
        (1, "call_b", "function"),
        (0, None, None),
    ]
    assembled: dict[int, str] = {}
    for d in deltas:
        assembled[d.index] = assembled.get(d.index, "") + (d.function.arguments or "")  # type: ignore[union-attr]
    assert assembled == {0: '{"q":"tea"}', 1: "{}"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 13
    params = queued_task(sid)["params"]
    assert params == {"tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": True}


def test_openai_whole_reply_with_tool_calls(idle: GatewayProcess) -> None:
    def call(sid: str) -> Any:
        return openai_client(idle, sid).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "tea?"}],
            tools=TOOLS,  # type: ignore[arg-type]
        )

    _, answer = scripted(idle, TOOL_SCRIPT, call)
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "tool_calls" and message.content is None
    assert [c.model_dump() for c in message.tool_calls] == CALLS


def test_anthropic_tool_use_blocks(idle: GatewayProcess) -> None:
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]

    def call(sid: str) -> Any:
        client = anthropic.Anthropic(
            base_url=idle.url,
            api_key="unused",
            max_retries=0,
            default_headers={"X-Session-Id": sid},
        )
        with client.messages.stream(
            model=MODEL,
            max_tokens=100,
            messages=[{"role": "user", "content": "tea?"}],
            tools=tools,  # type: ignore[arg-type]
        ) as stream:
            return stream.get_final_message()

    sid, final = scripted(idle, TOOL_SCRIPT, call)
    assert [(b.type, b.id, b.name, b.input) for b in final.content] == [  # type: ignore[union-attr]
        ("tool_use", "call_a", "lookup", {"q": "tea"}),
        ("tool_use", "call_b", "clock", {}),
    ]
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 4
    assert queued_task(sid)["params"]["tools"][0]["function"]["name"] == "lookup"


def test_a_restart_drops_the_abandoned_text_of_a_whole_reply(idle: GatewayProcess) -> None:
    def call(sid: str) -> Any:
        return openai_client(idle, sid).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )

    _, answer = scripted(idle, RESTART_SCRIPT, call)
    assert answer.choices[0].message.content == "kept"


def test_a_stream_that_showed_abandoned_text_fails_instead_of_splicing(
    idle: GatewayProcess,
) -> None:
    def call(sid: str) -> Any:
        stream = openai_client(idle, sid).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.APIError) as failed:
            list(stream)
        return failed.value

    _, error = scripted(idle, RESTART_SCRIPT, call)
    assert error.body["code"] == "turn_restarted"


def test_the_client_whole_reply_drops_the_abandoned_text(
    idle: GatewayProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENWINDOW_MODELS_FILE", idle.env["TOKENWINDOW_MODELS_FILE"])
    get_settings.cache_clear()
    get_registry.cache_clear()
    try:
        with SyncTokenManagementClient(TEST_REDIS_URL) as client:
            _, answer = scripted(
                idle,
                RESTART_SCRIPT,
                lambda sid: client.create_completion(
                    sid, [{"role": "user", "content": "hi"}], MODEL
                ),
            )
    finally:
        get_settings.cache_clear()
        get_registry.cache_clear()
    assert isinstance(answer, dict)
    assert answer["content"] == "kept" and answer["finish_reason"] == "stop"


def chat_stream(gateway: GatewayProcess, sid: str) -> Any:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    headers = {"X-Session-Id": sid}
    return httpx.stream(
        "POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=30
    )


def test_a_silent_stream_is_pinged_and_goes_on(idle: GatewayProcess) -> None:
    sid, lines = f"ev-{uuid.uuid4().hex[:10]}", []
    with chat_stream(idle, sid) as response:
        for line in response.iter_lines():
            lines.append(line)
            if line == ": ping" and lines.count(line) == 1:
                play(sid, RESTART_SCRIPT[2:])  # nothing was sent while the turn waited
            if line == "data: [DONE]":
                break
    chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "kept"


def test_shutdown_ends_open_streams(idle: GatewayProcess, tmp_path: Path) -> None:
    gateway = GatewayProcess(idle.env, tmp_path / "gateway.log").start()
    lines = []
    try:
        with chat_stream(gateway, f"ev-{uuid.uuid4().hex[:10]}") as response:
            for line in response.iter_lines():
                lines.append(line)
                if len(lines) == 1:
                    assert gateway.process is not None
                    gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process is not None
        assert gateway.process.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        gateway.stop()
    assert "event: error" in lines
    error = json.loads(next(line for line in reversed(lines) if line.startswith("data: "))[6:])
    assert error["error"]["code"] == "shutting_down"
