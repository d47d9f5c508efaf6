"""A running pipeline for tests: fake provider, models file, real worker, client.

Test packages that need it import the `pipeline` fixture into their conftest."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import yaml

from tests.conftest import TEST_REDIS_URL
from tests.fakes.server import FakeProviderServer
from tests.fakes.specs import FAKE_KEY
from tests.harness import WorkerProcess
from tokenwindow.models import get_registry
from tokenwindow.settings import get_settings

TINY_MODEL = "tiny-gpt"
"""2,000 input tokens behind an OpenAI-compatible endpoint that rejects anything larger."""
TINY_WINDOW = 2_000
AGENT_MODEL = "agent-gpt"
"""4,000 input tokens: the window of the agent tests, whose histories grow ten times larger."""
AGENT_WINDOW = 4_000
BIG_MODEL = "fake-gpt-4o"
CLAUDE_MODEL = "fake-claude"
GEMINI_MODEL = "fake-gemini"


def models_file(path: Path, server: FakeProviderServer) -> Path:
    def entry(name: str, model: str, base: str, max_in: int, max_out: int) -> dict[str, object]:
        return {
            "model_name": name,
            "litellm_params": {"model": model, "api_base": base, "api_key": FAKE_KEY},
            "model_info": {"max_input_tokens": max_in, "max_output_tokens": max_out},
        }

    data = {
        "model_list": [
            entry(TINY_MODEL, "openai/gpt-4o", server.openai_base, TINY_WINDOW, 200),
            entry(AGENT_MODEL, "openai/gpt-4o", server.openai_base, AGENT_WINDOW, 200),
            entry(BIG_MODEL, "openai/gpt-4o", server.openai_base, 128_000, 1_000),
            entry(
                CLAUDE_MODEL,
                "anthropic/claude-3-5-sonnet-20241022",
                server.anthropic_base,
                200_000,
                1_000,
            ),
            entry(GEMINI_MODEL, "gemini/gemini-1.5-pro", server.gemini_base, 2_097_152, 1_000),
        ]
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@dataclass
class Pipeline:
    provider: FakeProviderServer
    worker: WorkerProcess
    env: dict[str, str]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """One fake provider and one real worker (all queues, 2 processes) per test module."""
    tmp = tmp_path_factory.mktemp("pipeline")
    with FakeProviderServer() as provider, pytest.MonkeyPatch.context() as patch:
        env = {
            "REDIS_URL": TEST_REDIS_URL,
            "TOKENWINDOW_MODELS_FILE": str(models_file(tmp / "models.yaml", provider)),
            "TOKENWINDOW_PROVIDER_TIMEOUT_SECONDS": "5",
            "TOKENWINDOW_MAX_RETRIES": "3",
            "TOKENWINDOW_STREAM_FLUSH_MS": "0",
        }
        for key, value in env.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        get_registry.cache_clear()
        # Tasks an earlier module left queued (retries, waiting turns) must not run here.
        with redis.Redis.from_url(TEST_REDIS_URL) as client:
            client.flushdb()
        worker = WorkerProcess(env, log_path=tmp / "worker.log").start()
        try:
            yield Pipeline(provider, worker, env)
        finally:
            worker.stop()
            get_settings.cache_clear()
            get_registry.cache_clear()
