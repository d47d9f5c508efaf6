"""OpenAI SDK clients that trim, edit and regenerate their histories within one session: the
transcript holds every message once, and the model sees the conversation the client sent."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.gateway.conftest import GatewayProcess
from tests.gateway.test_sdks import openai_sdk
from tests.pipeline import Pipeline
from tests.stack import BIG_MODEL
from tokenwindow.sync_client import SyncTokenManagementClient

pytestmark = pytest.mark.slow


def ask(gateway: GatewayProcess, sid: str, history: list[dict[str, Any]]) -> str:
    reply = openai_sdk(gateway, sid).chat.completions.create(
        model=BIG_MODEL,
        messages=history,  # type: ignore[arg-type]
    )
    return str(reply.choices[0].message.content)


def transcript(sid: str) -> list[Any]:
    with SyncTokenManagementClient() as client:
        return [m["content"] for m in client.get_transcript(sid)]


def test_a_client_trimming_to_six_messages_leaves_each_message_once(
    gateway: GatewayProcess, pipeline: Pipeline
) -> None:
    sid = f"trim-{uuid.uuid4().hex[:8]}"
    history: list[dict[str, Any]] = []
    for n in range(20):
        history.append({"role": "user", "content": f"question {n}"})
        answer = ask(gateway, sid, history[-6:])
        history.append({"role": "assistant", "content": answer})
    assert transcript(sid) == [m["content"] for m in history]


def test_regenerate_and_edit_replace_the_tail_the_model_sees(
    gateway: GatewayProcess, pipeline: Pipeline
) -> None:
    pipeline.provider.reset()
    pipeline.provider.queue_replies("first answer", "second answer", "third answer")
    sid = f"edit-{uuid.uuid4().hex[:8]}"
    first = [{"role": "user", "content": "plan the launch"}]
    assert ask(gateway, sid, first) == "first answer"
    assert ask(gateway, sid, first) == "second answer", "a regenerate: the reply left out"
    edited = {"role": "user", "content": "plan the launch for Monday"}
    ask(gateway, sid, [*first, {"role": "assistant", "content": "second answer"}, edited])
    seen = [m["content"] for m in pipeline.provider.requests[-1].messages]
    assert seen == ["plan the launch", "second answer", "plan the launch for Monday"]
    assert transcript(sid) == [
        "plan the launch",
        "first answer",  # the abandoned branch stays recorded
        "second answer",
        "plan the launch for Monday",
        "third answer",
    ]
