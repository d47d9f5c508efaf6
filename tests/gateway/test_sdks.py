"""The official OpenAI and Anthropic SDKs against the gateway, real workers and fake providers."""

from __future__ import annotations

import uuid
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fakes.behaviour import Fault
from tests.gateway.conftest import GatewayProcess
from tests.pipeline import Pipeline
from tests.stack import BIG_MODEL, CLAUDE_MODEL, TINY_MODEL

pytestmark = pytest.mark.slow

UNICODE_REPLY = "Lines\u2028apart, paragraphs\u2029apart, next\x85line, and a\r\nreal one."
"""Every character a line splitter might break on, in one reply."""


def session() -> str:
    return f"sdk-{uuid.uuid4().hex[:10]}"


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def openai_sdk(gateway: GatewayProcess, sid: str | None = None) -> openai.OpenAI:
    headers = {"X-Session-Id": sid} if sid else None
    return openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, default_headers=headers
    )


def anthropic_sdk(gateway: GatewayProcess, sid: str | None = None) -> anthropic.Anthropic:
    headers = {"X-Session-Id": sid} if sid else None
    return anthropic.Anthropic(
        base_url=gateway.url, api_key="unused", max_retries=0, default_headers=headers
    )


@pytest.fixture
def provider(pipeline: Pipeline) -> Pipeline:
    pipeline.provider.reset()
    return pipeline


# --- OpenAI -----------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [BIG_MODEL, CLAUDE_MODEL])
def test_openai_stream_keeps_every_line_separator(
    gateway: GatewayProcess, provider: Pipeline, model: str
) -> None:
    provider.provider.queue_replies(UNICODE_REPLY)
    stream = openai_sdk(gateway, session()).chat.completions.create(
        model=model,
        messages=[user("say it")],  # type: ignore[list-item]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == UNICODE_REPLY
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_openai_whole_reply_has_the_providers_finish_reason_and_usage(
    gateway: GatewayProcess, provider: Pipeline
) -> None:
    provider.provider.queue_replies(UNICODE_REPLY + " and more words to cut")
    answer = openai_sdk(gateway, session()).chat.completions.create(
        model=BIG_MODEL,
        messages=[user("say it")],  # type: ignore[list-item]
        max_tokens=8,
    )
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.choices[0].finish_reason == "length"
    content = answer.choices[0].message.content
    assert content and UNICODE_REPLY.startswith(content)
    recorded = provider.provider.requests[-1]
    assert answer.usage is not None and answer.usage.prompt_tokens == recorded.prompt_tokens


def test_openai_errors_have_the_sdks_statuses(gateway: GatewayProcess, provider: Pipeline) -> None:
    client = openai_sdk(gateway, session())
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[user("x")])  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(
            model=BIG_MODEL,
            messages=[user("x")],  # type: ignore[list-item]
            extra_body={"frobnicate": True},
        )
    assert unknown.value.body["param"] == "frobnicate"  # type: ignore[index]
    assert "frobnicate" in unknown.value.message
    provider.provider.inject(*[Fault.error(429, retry_after=0.01)] * 4)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=BIG_MODEL, messages=[user("x")])  # type: ignore[list-item]
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_context_length_is_a_400_with_its_code(gateway: GatewayProcess, provider: Pipeline) -> None:
    provider.provider.configure(context_limit=5)
    try:
        with pytest.raises(openai.BadRequestError) as overflow:
            openai_sdk(gateway, session()).chat.completions.create(
                model=TINY_MODEL,
                messages=[user("a prompt the provider finds too long")],  # type: ignore[list-item]
            )
    finally:
        provider.provider.configure(unlimited=True)
    assert overflow.value.code == "context_length_exceeded"


# --- Anthropic --------------------------------------------------------------------------------
def test_anthropic_whole_message(gateway: GatewayProcess, provider: Pipeline) -> None:
    provider.provider.queue_replies(UNICODE_REPLY)
    sid = session()
    reply = anthropic_sdk(gateway, sid).messages.create(
        model=CLAUDE_MODEL,
        max_tokens=200,
        system="be brief",
        messages=[{"role": "user", "content": [{"type": "text", "text": "say it"}]}],
    )
    assert reply.type == "message" and reply.role == "assistant" and reply.id.startswith("msg_")
    assert [block.type for block in reply.content] == ["text"]
    assert reply.content[0].text == UNICODE_REPLY  # type: ignore[union-attr]
    assert reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    transcript = httpx.get(f"{gateway.url}/sessions/{sid}/messages").json()
    assert [m["role"] for m in transcript] == ["system", "user", "assistant"]


def test_anthropic_stream(gateway: GatewayProcess, provider: Pipeline) -> None:
    provider.provider.queue_replies(UNICODE_REPLY)
    client = anthropic_sdk(gateway, session())
    with client.messages.stream(
        model=BIG_MODEL, max_tokens=200, messages=[{"role": "user", "content": "say it"}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "message_delta" in kinds
    assert final.content[0].text == UNICODE_REPLY  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


def test_anthropic_errors_have_its_shape(gateway: GatewayProcess, provider: Pipeline) -> None:
    client = anthropic_sdk(gateway)
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=5, messages=[user("x")])  # type: ignore[list-item]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as unknown:
        client.messages.create(
            model=BIG_MODEL,
            max_tokens=5,
            messages=[user("x")],  # type: ignore[list-item]
            extra_body={"frobnicate": 1},
        )
    assert "frobnicate" in unknown.value.message
    assert unknown.value.body["type"] == "error"  # type: ignore[index]
