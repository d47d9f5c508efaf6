"""An agent loop as users write it: the official openai SDK streams thirty tool rounds through
``/v1/chat/completions`` into a model with a 4,000-token window, each tool result about 1,500
tokens. The client resends its whole history every round (45,000 tokens by the end); the
service must clear old tool results so that no request is ever over the window, and never send
a tool call without its result or a result without its call."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from strategies.validity import problems
from tests.fakes.behaviour import Reply, ToolCall, count_text
from tests.gateway.conftest import GatewayProcess
from tests.gateway.test_sdks import openai_sdk
from tests.pipeline import Pipeline
from tests.stack import AGENT_MODEL, AGENT_WINDOW
from tokenwindow.sync_client import SyncTokenManagementClient

pytestmark = pytest.mark.slow

ROUNDS = 30
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read one source file of the repository.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
    }
]


def path(n: int) -> str:
    return f"src/module_{n:02d}.py"


def file_contents(n: int) -> str:
    """About 1,500 tokens, different for every file."""
    lines = [f"def handler_{n}_{i}(request):  # step {i} of module {n}" for i in range(84)]
    return "\n".join(lines)


@dataclass
class Streamed:
    text: str = ""
    finish: str | None = None
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)


def stream_round(client: openai.OpenAI, messages: list[dict[str, Any]]) -> Streamed:
    """One request, its tool-call deltas put back together by index as an SDK user does."""
    out = Streamed()
    chunks: Iterator[Any] = client.chat.completions.create(
        model=AGENT_MODEL,
        messages=messages,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        stream=True,
    )
    for chunk in chunks:
        for choice in chunk.choices:
            out.text += choice.delta.content or ""
            out.finish = choice.finish_reason or out.finish
            for delta in choice.delta.tool_calls or []:
                call = out.calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    return out


@pytest.fixture
def agent_provider(pipeline: Pipeline) -> Iterator[Pipeline]:
    """The fake refuses, as the real API does, any prompt over the agent model's window."""
    pipeline.provider.reset()
    pipeline.provider.configure(context_limit=AGENT_WINDOW)
    yield pipeline
    pipeline.provider.reset()


def test_thirty_streamed_tool_rounds_stay_inside_a_4000_token_window(
    gateway: GatewayProcess, agent_provider: Pipeline
) -> None:
    fake = agent_provider.provider
    fake.queue_replies(
        *(Reply(tool_calls=(ToolCall("read_file", {"path": path(n)}),)) for n in range(ROUNDS)),
        "Every module registers its handlers in order.",
    )
    sid = f"agent-{uuid.uuid4().hex[:8]}"
    client = openai_sdk(gateway, sid)
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Read every module, then say how handlers are registered."}
    ]
    for n in range(ROUNDS):
        reply = stream_round(client, messages)
        assert reply.finish == "tool_calls", f"round {n}"
        assert [(c["name"], json.loads(c["arguments"])) for c in reply.calls.values()] == [
            ("read_file", {"path": path(n)})
        ], f"round {n}"
        call = reply.calls[0]
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["name"], "arguments": call["arguments"]},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": file_contents(n)})
    final = stream_round(client, messages)
    assert (final.text, final.finish) == ("Every module registers its handlers in order.", "stop")

    sent = fake.requests
    assert len(sent) == ROUNDS + 1, "every round reached the model exactly once"
    schema_tokens = count_text(json.dumps(TOOLS))
    assert fake.max_prompt_tokens + schema_tokens <= AGENT_WINDOW
    assert sum(count_text(file_contents(n)) for n in range(ROUNDS)) > 10 * AGENT_WINDOW
    assert [p for request in sent for p in problems(request.messages, "openai")] == []  # type: ignore[arg-type]
    newest = sent[-1].messages
    assert newest[-1]["content"] == file_contents(ROUNDS - 1), "the newest result is whole"
    assert len(newest) == len(messages), "old results were cleared in place, no pair dropped"

    with SyncTokenManagementClient() as tokenwindow:
        transcript = tokenwindow.get_transcript(sid)
    results = [m["content"] for m in transcript if m["role"] == "tool"]
    assert results == [file_contents(n) for n in range(ROUNDS)], "the transcript keeps them all"
    assert transcript[-1]["content"] == final.text
