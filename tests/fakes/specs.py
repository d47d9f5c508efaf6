"""Model specs that point litellm at a fake provider."""

from __future__ import annotations

from tokenwindow.models import ModelSpec

FAKE_KEY = "sk-fake-test-key"


def _fake_spec(
    api_base: str, *, name: str, litellm_model: str, max_input_tokens: int, max_output_tokens: int
) -> ModelSpec:
    """A model behind the fake; only OpenAI's own models count exactly."""
    provider = litellm_model.split("/", 1)[0]
    return ModelSpec(
        name=name,
        litellm_model=litellm_model,
        provider=provider,
        max_input_tokens=max_input_tokens,
        max_output_tokens=max_output_tokens,
        encoding="o200k_base",
        exact=provider == "openai",
        api_base=api_base,
        api_key=FAKE_KEY,
        source="test",
    )


def openai_spec(
    api_base: str, *, name: str = "fake-gpt-4o", max_input_tokens: int = 128_000
) -> ModelSpec:
    """gpt-4o served by the fake's OpenAI route (``api_base`` is ``server.openai_base``)."""
    return _fake_spec(
        api_base,
        name=name,
        litellm_model="openai/gpt-4o",
        max_input_tokens=max_input_tokens,
        max_output_tokens=4_096,
    )


def anthropic_spec(
    api_base: str, *, name: str = "fake-claude", max_input_tokens: int = 200_000
) -> ModelSpec:
    """Claude 3.5 Sonnet served by the fake's Messages route (``server.anthropic_base``)."""
    return _fake_spec(
        api_base,
        name=name,
        litellm_model="anthropic/claude-3-5-sonnet-20241022",
        max_input_tokens=max_input_tokens,
        max_output_tokens=8_192,
    )


def gemini_spec(
    api_base: str, *, name: str = "fake-gemini", max_input_tokens: int = 2_097_152
) -> ModelSpec:
    """Gemini 1.5 Pro served by the fake's Gemini API route (``server.gemini_base``)."""
    return _fake_spec(
        api_base,
        name=name,
        litellm_model="gemini/gemini-1.5-pro",
        max_input_tokens=max_input_tokens,
        max_output_tokens=8_192,
    )
