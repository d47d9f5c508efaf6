"""Settings: the seed's variables work, and a bad value stops start-up with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tokenwindow.errors import ConfigurationError
from tokenwindow.settings import DEFAULT_REDIS_URL, Settings, StrategyName, load_settings
from tokenwindow.topology import celery_broker

ROOT = Path(__file__).resolve().parent.parent.parent
SEED_VARIABLES = (
    "REDIS_URL",
    "BROKER_URL",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "DEFAULT_STRATEGY",
    "LOG_LEVEL",
    "SENTRY_DSN",
    "TOKENWINDOW_MODELS_FILE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test from the documented defaults, whatever the shell exported."""
    for name in list(os.environ):
        if name in SEED_VARIABLES or name.startswith("TOKENWINDOW_"):
            monkeypatch.delenv(name)


def settings() -> Settings:
    # No .env file: a developer's local one must not change what these tests see.
    return load_settings(_env_file=None)


def config_error() -> str:
    with pytest.raises(ConfigurationError) as caught:
        settings()
    message = caught.value.message
    assert "\n" not in message
    return message


def test_defaults() -> None:
    s = settings()
    assert s.redis_url == DEFAULT_REDIS_URL == "redis://127.0.0.1:6379/0"
    assert s.redis_url_explicit is False
    assert celery_broker(s).url == s.redis_url
    assert s.default_strategy is StrategyName.HYBRID
    assert s.log_level == "INFO"
    assert (s.soft_threshold, s.hard_threshold, s.target_ratio) == (0.75, 0.95, 0.5)
    assert s.sentry_dsn is None
    assert s.log_prompts is False
    assert s.litellm_local_model_cost_map is True


def test_seed_variables_are_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6380/3")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    monkeypatch.setenv("GOOGLE_API_KEY", "g-key")
    monkeypatch.setenv("DEFAULT_STRATEGY", "sliding_window")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("SENTRY_DSN", "https://public@sentry.example/1")
    monkeypatch.setenv("TOKENWINDOW_MODELS_FILE", str(models))
    s = settings()
    assert s.redis_url == "redis://cache.internal:6380/3"
    assert s.redis_url_explicit is True
    assert s.openai_api_key is not None and s.openai_api_key.get_secret_value() == "sk-openai"
    assert s.anthropic_api_key is not None and s.anthropic_api_key.get_secret_value() == "sk-ant"
    assert s.google_api_key is not None and s.google_api_key.get_secret_value() == "g-key"
    assert s.default_strategy is StrategyName.SLIDING_WINDOW
    assert s.log_level == "DEBUG"
    assert s.sentry_dsn is not None
    assert s.models_file == models


def test_gemini_key_is_an_alias_for_google(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "gem")
    key = settings().google_api_key
    assert key is not None and key.get_secret_value() == "gem"


def test_secrets_stay_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    assert "sk-very-secret" not in repr(settings())


def test_prefixed_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWINDOW_SOFT_THRESHOLD", "0.6")
    monkeypatch.setenv("TOKENWINDOW_HARD_THRESHOLD", "0.9")
    monkeypatch.setenv("TOKENWINDOW_ESTIMATE_MARGIN_RATIOS", '{"gemini": 0.12}')
    s = settings()
    assert (s.soft_threshold, s.hard_threshold) == (0.6, 0.9)
    assert s.estimate_margin_ratios == {"gemini": 0.12}


def test_unknown_strategy_names_the_variable_and_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEFAULT_STRATEGY", "bogus")
    message = config_error()
    assert "DEFAULT_STRATEGY" in message
    for strategy in StrategyName:
        assert strategy.value in message


def test_unknown_log_level_names_the_variable_and_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    message = config_error()
    assert "LOG_LEVEL" in message
    for level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        assert level in message


@pytest.mark.parametrize(
    ("value", "expected"), [("1.5", "less than or equal to 1"), ("lots", "valid number")]
)
def test_threshold_out_of_range(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("TOKENWINDOW_SOFT_THRESHOLD", value)
    message = config_error()
    assert "TOKENWINDOW_SOFT_THRESHOLD" in message
    assert expected in message


def test_thresholds_out_of_order_name_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWINDOW_SOFT_THRESHOLD", "0.99")
    monkeypatch.setenv("TOKENWINDOW_HARD_THRESHOLD", "0.9")
    message = config_error()
    assert "TOKENWINDOW_SOFT_THRESHOLD" in message
    assert "TOKENWINDOW_HARD_THRESHOLD" in message


def test_soft_time_limit_must_be_below_hard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWINDOW_COMPLETION_TIME_LIMIT", "100")
    message = config_error()
    assert "TOKENWINDOW_COMPLETION_SOFT_TIME_LIMIT" in message


def test_every_problem_is_reported_on_the_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFAULT_STRATEGY", "bogus")
    monkeypatch.setenv("LOG_LEVEL", "LOUD")
    message = config_error()
    assert "DEFAULT_STRATEGY" in message
    assert "LOG_LEVEL" in message


@pytest.mark.slow
def test_worker_with_bad_settings_exits_with_one_line() -> None:
    env = {**os.environ, "DEFAULT_STRATEGY": "bogus"}
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "fast"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "DEFAULT_STRATEGY" in lines[0]
    assert "hybrid" in lines[0]
