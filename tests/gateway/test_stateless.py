"""Stateless requests: fitted to the window, with summaries reused across calls."""

from __future__ import annotations

from typing import Any

import openai
import pytest
import redis

from strategies.base import SUMMARY_HEADER
from tests.conftest import TEST_REDIS_URL
from tests.gateway.conftest import GatewayProcess
from tests.pipeline import Pipeline
from tests.stack import TINY_MODEL, TINY_WINDOW

pytestmark = pytest.mark.slow

SUMMARY_KEYS = "tw:stateless:summary:*"


def long_history(turns: int) -> list[dict[str, Any]]:
    """Alternating turns of about 90 tokens each, every one distinct."""
    history: list[dict[str, Any]] = [{"role": "system", "content": "You answer briefly."}]
    for i in range(turns):
        facts = " ".join(f"fact{i}-{j} is number {i * 100 + j}." for j in range(12))
        history.append({"role": "user" if i % 2 == 0 else "assistant", "content": facts})
    if history[-1]["role"] != "user":
        history.append({"role": "user", "content": "What was fact3-4?"})
    return history


def summaries(messages: list[dict[str, Any]]) -> list[str]:
    return [
        str(m["content"]) for m in messages if str(m.get("content", "")).startswith(SUMMARY_HEADER)
    ]


def test_an_over_long_request_is_fitted_and_its_summary_reused(
    gateway: GatewayProcess, pipeline: Pipeline
) -> None:
    pipeline.provider.reset()
    store = redis.Redis.from_url(TEST_REDIS_URL)
    for key in store.scan_iter(SUMMARY_KEYS):
        store.delete(key)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    history = long_history(30)

    first = client.chat.completions.create(model=TINY_MODEL, messages=history)  # type: ignore[arg-type]
    sent = pipeline.provider.requests[-1]
    assert sent.prompt_tokens < TINY_WINDOW
    (summary,) = summaries(sent.messages)
    cached = list(store.scan_iter(SUMMARY_KEYS))
    assert len(cached) == 1 and 0 < int(store.ttl(cached[0])) <= 24 * 3600

    history += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And fact5-1?"},
    ]
    client.chat.completions.create(model=TINY_MODEL, messages=history)  # type: ignore[arg-type]
    again = pipeline.provider.requests[-1]
    assert summaries(again.messages) == [summary], "the cached summary stands in for the prefix"
    assert list(store.scan_iter(SUMMARY_KEYS)) == cached, "nothing was summarized again"
    assert again.messages[-1]["content"] == "And fact5-1?"
    store.close()
