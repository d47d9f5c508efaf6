"""A LiteLLM proxy config as it is: keys from the environment, two deployments of one name with
one of them failing, and a context-window fallback for a turn too large to fit."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TEST_REDIS_URL
from tests.fakes.behaviour import Fault
from tests.fakes.server import FakeProviderServer
from tests.harness import WorkerProcess
from tokenwindow.client import TokenManagementClient
from tokenwindow.events import EventType
from tokenwindow.models import get_registry
from tokenwindow.settings import get_settings

KEY_VARIABLE = "ROUTING_TEST_PROVIDER_KEY"
SECRET_KEY = "sk-from-the-environment"


def deployment(name: str, base: str, max_in: int, key: str) -> dict[str, Any]:
    return {
        "model_name": name,
        "litellm_params": {"model": "openai/gpt-4o", "api_base": base, "api_key": key},
        "model_info": {"max_input_tokens": max_in, "max_output_tokens": 200},
    }


@pytest.fixture
def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeProviderServer() as good, FakeProviderServer() as broken, FakeProviderServer() as big:
        config = {
            "model_list": [
                deployment("pair-gpt", broken.openai_base, 100_000, "sk-broken"),
                deployment("pair-gpt", good.openai_base, 100_000, f"os.environ/{KEY_VARIABLE}"),
                deployment("small-gpt", good.openai_base, 1_000, f"os.environ/{KEY_VARIABLE}"),
                deployment("large-gpt", big.openai_base, 100_000, f"os.environ/{KEY_VARIABLE}"),
            ],
            "litellm_settings": {"context_window_fallbacks": [{"small-gpt": ["large-gpt"]}]},
        }
        path = tmp_path / "models.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        env = {
            "REDIS_URL": TEST_REDIS_URL,
            "TOKENWINDOW_MODELS_FILE": str(path),
            KEY_VARIABLE: SECRET_KEY,
            "TOKENWINDOW_MAX_RETRIES": "1",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        get_registry.cache_clear()
        worker = WorkerProcess(env, log_path=tmp_path / "w.log", pool="threads", concurrency=8)
        worker.start()
        try:
            yield good, broken, big
        finally:
            worker.stop()
            get_settings.cache_clear()
            get_registry.cache_clear()


async def turn(model: str, text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    sid = f"route-{uuid.uuid4().hex[:8]}"
    async with TokenManagementClient() as client:
        answer = await client.create_completion(sid, [{"role": "user", "content": text}], model)
        raw = await client.redis.xrange(f"tw:{{{sid}}}:events")
        return answer, [json.loads(f["event"]) for _, f in raw]


def test_deployments_fail_over_with_the_key_from_the_environment(
    servers: tuple[FakeProviderServer, ...], redis_client: Any
) -> None:
    good, broken, _ = servers
    broken.inject(*[Fault.error(500) for _ in range(20)])
    for n in range(4):
        answer, _ = asyncio.run(turn("pair-gpt", f"hello {n}"))
        assert answer["content"].endswith(f"hello {n}")
    assert len(good.requests) == 4, "every turn was answered by the deployment that works"
    assert {r.api_key for r in good.requests} == {SECRET_KEY}
    assert all(r.api_key == "sk-broken" for r in broken.requests)


def test_a_turn_too_large_for_its_model_lands_on_the_fallback(
    servers: tuple[FakeProviderServer, ...], redis_client: Any
) -> None:
    good, _, big = servers
    text = "a long request that no window of a thousand tokens can hold whole " * 120
    answer, events = asyncio.run(turn("small-gpt", text))
    assert answer["content"].startswith("Fake reply to 1 messages")
    fallback = [e for e in events if e["type"] == EventType.MODEL_FALLBACK]
    assert [(e["model"], e["fallback"]) for e in fallback] == [("small-gpt", "large-gpt")]
    assert len(big.requests) == 1 and not good.requests
    assert big.requests[0].messages[-1]["content"] == text, "the newest turn was not cut"
