"""A LiteLLM proxy config through a direct call: env keys and every ``litellm_params`` key
reach the provider, the Router-only ones do not. (Failing over between the two deployments of
one ``model_name`` is a turn's: ``tests/tasks/test_models_file_routing.py``.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pytest import MonkeyPatch

from tests.fakes import FakeProviderServer, Fault
from tokenwindow.messages import Message
from tokenwindow.models import ModelRegistry
from tokenwindow.settings import Settings, load_settings
from workers import llm

MESSAGES: list[Message] = [{"role": "user", "content": "Where do we meet?"}]
CONFIG = """
model_list:
  - model_name: small
    litellm_params:
      model: openai/gpt-4o
      api_base: {failing}
      api_key: os.environ/KEY_FAILING
      order: 1
    model_info: {{max_input_tokens: 4000, max_output_tokens: 500}}
  - model_name: small
    litellm_params:
      model: openai/gpt-4o
      api_base: {healthy}
      api_key: os.environ/KEY_HEALTHY
      order: 2
      extra_body: {{trace_tag: nightly}}
      seed: 7
    model_info: {{max_input_tokens: 4000, max_output_tokens: 500}}
  - model_name: big
    litellm_params: {{model: openai/gpt-4o, api_base: {healthy}, api_key: os.environ/KEY_BIG}}
    model_info: {{max_input_tokens: 128000, max_output_tokens: 4000}}
router_settings:
  context_window_fallbacks: [{{small: [big]}}]
"""


@pytest.fixture
def servers() -> Iterator[tuple[FakeProviderServer, FakeProviderServer]]:
    with FakeProviderServer() as failing, FakeProviderServer() as healthy:
        failing.inject(*[Fault.error(500)] * 50)
        yield failing, healthy


@pytest.fixture
def settings(
    tmp_path: Path, monkeypatch: MonkeyPatch, servers: tuple[FakeProviderServer, ...]
) -> Settings:
    failing, healthy = servers
    monkeypatch.setenv("KEY_FAILING", "sk-env-failing")
    monkeypatch.setenv("KEY_HEALTHY", "sk-env-healthy")
    monkeypatch.setenv("KEY_BIG", "sk-env-big")
    path = tmp_path / "proxy.yaml"
    path.write_text(
        CONFIG.format(failing=failing.openai_base, healthy=healthy.openai_base), encoding="utf-8"
    )
    return load_settings(models_file=path, provider_timeout_seconds=10)


def test_a_direct_call_passes_every_litellm_param_and_the_env_key(
    servers: tuple[FakeProviderServer, FakeProviderServer], settings: Settings
) -> None:
    _, healthy = servers
    registry = ModelRegistry.from_settings(settings)
    spec = registry.get("small")
    deployment = registry.get("big").deployments[0]
    assert spec.context_window_fallbacks == ("big",)
    assert deployment["api_key"] == "sk-env-big"
    params = spec.deployments[1]
    second = replace(
        spec, api_base=params["api_base"], api_key=params["api_key"], litellm_params=params
    )
    completion = llm.generate(second, MESSAGES, settings=settings)
    assert completion.text
    sent = healthy.requests[-1]
    assert sent.api_key == "sk-env-healthy"
    assert (sent.body["trace_tag"], sent.body["seed"]) == ("nightly", 7)
    assert "order" not in sent.body
