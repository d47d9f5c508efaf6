"""The registry: built-ins over litellm's map, the models file over both, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest import LogCaptureFixture, MonkeyPatch

from tokenwindow.errors import ConfigurationError, UnknownModelError
from tokenwindow.models import ModelRegistry, ModelSpec, openai_encoding, parse_models_file
from tokenwindow.settings import load_settings


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry.from_settings(load_settings())


def registry_with(tmp_path: Path, text: str, name: str = "models.yaml") -> ModelRegistry:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return ModelRegistry.from_settings(load_settings(models_file=path))


def test_seed_table_wins_over_litellm_map(registry: ModelRegistry) -> None:
    gpt4o = registry.get("gpt-4o")
    assert (gpt4o.max_input_tokens, gpt4o.max_output_tokens) == (128_000, 4_096)
    assert registry.get("openai/gpt-4o") == gpt4o
    claude = registry.get("claude-3-5-sonnet")
    assert (claude.max_input_tokens, claude.max_output_tokens, claude.exact) == (
        200_000,
        8_192,
        False,
    )
    gemini = registry.get("gemini-1.5-pro")
    assert (gemini.max_input_tokens, gemini.max_output_tokens) == (1_000_000, 8_192)


def test_litellm_chat_models_are_known(registry: ModelRegistry) -> None:
    assert registry.get("gpt-4").encoding == "cl100k_base"
    assert registry.get("gpt-4o-mini").encoding == "o200k_base"
    assert registry.get("azure/gpt-4o").exact
    assert not registry.get("claude-sonnet-4-5").exact
    assert len(registry.all()) > 500


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("gpt-4.1-mini", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("azure/eu/gpt-4o-mini", "o200k_base"),
        ("openrouter/openai/gpt-4o", None),
        ("claude-3-opus", None),
    ],
)
def test_openai_encoding(model: str, encoding: str | None) -> None:
    assert openai_encoding(model) == encoding


def test_unknown_model_suggests_close_names(registry: ModelRegistry) -> None:
    with pytest.raises(UnknownModelError) as info:
        registry.get("gpt-4o-minii")
    assert "gpt-4o-mini" in info.value.suggestions
    assert "did you mean" in str(info.value)


def test_fallback_only_when_configured() -> None:
    registry = ModelRegistry([], fallback_encoding="cl100k_base")
    spec = registry.get("my-local-llama")
    assert (spec.encoding, spec.exact, spec.source) == ("cl100k_base", False, "fallback")


MODELS_YAML = """
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o, api_key: os.environ/OPENAI_API_KEY}
    model_info: {max_input_tokens: 64000, max_output_tokens: 2000}
  - model_name: house-llama
    litellm_params: {model: hosted_vllm/llama-3, api_base: "http://llm:8000/v1"}
    model_info: {max_input_tokens: 32000, max_output_tokens: 1000, encoding: cl100k_base}
  - model_name: mini
    litellm_params: {model: openai/gpt-4o-mini}
"""


def test_models_file_wins_and_fills_windows(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    registry = registry_with(tmp_path, MODELS_YAML)
    assert registry.get("gpt-4o").max_input_tokens == 64_000
    assert registry.get("gpt-4o").api_key == "sk-from-env"
    llama = registry.get("house-llama")
    assert (llama.encoding, llama.exact, llama.api_base) == (
        "cl100k_base",
        False,
        "http://llm:8000/v1",
    )
    mini = registry.get("mini")
    assert (mini.max_input_tokens, mini.exact) == (128_000, True)


def test_models_file_json_loads(tmp_path: Path) -> None:
    data = {
        "model_list": [
            {
                "model_name": "j",
                "litellm_params": {"model": "anthropic/claude-x"},
                "model_info": {"max_input_tokens": 100, "max_output_tokens": 10},
            }
        ]
    }
    registry = registry_with(tmp_path, json.dumps(data), "models.json")
    params = {"model": "anthropic/claude-x"}
    assert registry.get("j") == ModelSpec(
        "j",
        "anthropic/claude-x",
        "anthropic",
        100,
        10,
        "o200k_base",
        False,
        source="file",
        litellm_params=params,
        deployments=(params,),
    )


def test_deployments_sharing_a_name_share_the_smallest_window(tmp_path: Path) -> None:
    text = """
model_list:
  - {model_name: m, litellm_params: {model: a/x},
     model_info: {max_input_tokens: 90, max_output_tokens: 9}}
  - {model_name: m, litellm_params: {model: a/y},
     model_info: {max_input_tokens: 50, max_output_tokens: 20}}
"""
    spec = registry_with(tmp_path, text).get("m")
    assert (spec.max_input_tokens, spec.max_output_tokens) == (50, 9)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model_list: 3", "needs a 'model_list' list"),
        ("model_list: [{litellm_params: {model: a/b}}]", "model_list[0].model_name"),
        ("model_list: [{model_name: m}]", "model_list[0].litellm_params.model"),
        (
            "model_list: [{model_name: m, litellm_params: {model: a/b}}]",
            "model_list[0].model_info.max_input_tokens",
        ),
        (
            "model_list: [{model_name: m, litellm_params: {model: a/b},"
            " model_info: {max_input_tokens: 0, max_output_tokens: 1}}]",
            "max_input_tokens: must be a positive integer",
        ),
        (
            "model_list: [{model_name: m, litellm_params: {model: a/b},"
            " model_info: {max_input_tokens: 9, max_output_tokens: 1, encoding: bogus}}]",
            "model_info.encoding: 'bogus'",
        ),
        (
            "model_list: [{model_name: m, litellm_params: {model: a/b},"
            " model_info: {max_input_tokens: 9, max_output_tokens: 1, exact: maybe}}]",
            "model_info.exact",
        ),
        ("model_list: [oops", "is not YAML/JSON"),
    ],
)
def test_models_file_errors_name_file_entry_and_field(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        parse_models_file(path)
    assert needle in str(info.value)
    assert "bad.yaml" in str(info.value)


def test_missing_models_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        parse_models_file(tmp_path / "absent.yaml")


PROXY_CONFIG = """
model_list:
  - model_name: small
    litellm_params:
      model: azure/gpt-4o-mini
      api_base: https://eu.example.invalid
      api_key: os.environ/EU_AZURE_KEY
      api_version: os.environ/AZURE_API_VERSION
      timeout: 30
      extra_headers: {X-Team: search}
      rpm: 600
    model_info: {max_input_tokens: 8000, max_output_tokens: 500, id: eu-1}
  - model_name: small
    litellm_params: {model: azure/gpt-4o-mini, api_base: https://us.example.invalid,
                     api_key: os.environ/US_AZURE_KEY, api_version: "2024-10-21"}
    model_info: {max_input_tokens: 8000, max_output_tokens: 500, id: us-1}
  - model_name: big
    litellm_params: {model: openai/gpt-4o, api_key: os.environ/EU_AZURE_KEY}
    model_info: {max_input_tokens: 128000, max_output_tokens: 4000}
    tpm_limit: 5
litellm_settings:
  drop_params: true
  success_callback: [langfuse]
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 2
  redis_host: cache.internal
  context_window_fallbacks: [{small: [big]}]
general_settings: {master_key: sk-admin}
"""
ENVIRON = {"EU_AZURE_KEY": "sk-eu", "US_AZURE_KEY": "sk-us", "AZURE_API_VERSION": "2024-06-01"}


def proxy_registry(tmp_path: Path, monkeypatch: MonkeyPatch, text: str) -> ModelRegistry:
    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    return registry_with(tmp_path, text)


def test_a_litellm_proxy_config_loads_as_the_proxy_reads_it(
    tmp_path: Path, monkeypatch: MonkeyPatch
) -> None:
    registry = proxy_registry(tmp_path, monkeypatch, PROXY_CONFIG)
    small = registry.get("small")
    assert small.api_key == "sk-eu"
    assert small.call_params == {
        "api_version": "2024-06-01",
        "timeout": 30,
        "extra_headers": {"X-Team": "search"},
    }
    assert small.litellm_params["rpm"] == 600
    assert [d["api_key"] for d in small.deployments] == ["sk-eu", "sk-us"]
    assert small.context_window_fallbacks == ("big",)
    assert registry.get("big").context_window_fallbacks == ()
    assert [d["api_base"] for d in small.deployments] == [
        "https://eu.example.invalid",
        "https://us.example.invalid",
    ]
    assert [small.deployment(n).api_base for n in range(3)] == [
        "https://eu.example.invalid",
        "https://us.example.invalid",
        "https://eu.example.invalid",
    ], "turns spread over the deployments, and a retry moves to the next"
    assert small.public_dict()["deployments"] == 2
    assert "sk-eu" not in json.dumps(small.public_dict())


def test_the_same_config_loads_as_json(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    import yaml

    text = json.dumps(yaml.safe_load(PROXY_CONFIG))
    registry = proxy_registry(tmp_path, monkeypatch, text)
    assert registry.get("small").context_window_fallbacks == ("big",)
    assert len(registry.get("small").deployments) == 2


def test_every_unused_section_and_key_is_named_once(
    tmp_path: Path, monkeypatch: MonkeyPatch, caplog: LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="tokenwindow.models"):
        proxy_registry(tmp_path, monkeypatch, PROXY_CONFIG)
    named = sorted(r.getMessage().split(": ")[2].split(" is not used")[0] for r in caplog.records)
    assert named == [
        "general_settings",
        "litellm_settings.drop_params",
        "litellm_settings.success_callback",
        "model_list[*].litellm_params.rpm",
        "model_list[*].model_info.id",
        "model_list[*].tpm_limit",
        "router_settings.num_retries",
        "router_settings.redis_host",
        "router_settings.routing_strategy",
    ]
    assert "models.yaml" in caplog.records[0].getMessage()


def test_a_missing_environment_variable_is_named(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    monkeypatch.delenv("US_AZURE_KEY", raising=False)
    path = tmp_path / "models.yaml"
    path.write_text(PROXY_CONFIG, encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        parse_models_file(path, environ={"EU_AZURE_KEY": "x", "AZURE_API_VERSION": "y"})
    assert "model_list[1].litellm_params.api_key" in str(info.value)
    assert "US_AZURE_KEY is not set" in str(info.value)


@pytest.mark.parametrize(
    ("fallbacks", "needle"),
    [
        ("[{small: [huge]}]", "unknown model 'huge'"),
        ("[{tiny: [big]}]", "unknown model 'tiny'"),
        ("{small: big}", "context_window_fallbacks: must be a list"),
        ("[{small: [1]}]", "context_window_fallbacks[0].small"),
    ],
)
def test_bad_context_window_fallbacks_are_named(
    tmp_path: Path, monkeypatch: MonkeyPatch, fallbacks: str, needle: str
) -> None:
    text = PROXY_CONFIG.replace("[{small: [big]}]", fallbacks)
    with pytest.raises(ConfigurationError) as info:
        proxy_registry(tmp_path, monkeypatch, text)
    assert needle in str(info.value)


def test_fallbacks_in_litellm_settings_count_too(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    text = PROXY_CONFIG.replace("  context_window_fallbacks: [{small: [big]}]\n", "").replace(
        "  drop_params: true", "  context_window_fallbacks: [{small: big}]"
    )
    registry = proxy_registry(tmp_path, monkeypatch, text)
    assert registry.get("small").context_window_fallbacks == ("big",)
