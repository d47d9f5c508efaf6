"""Usable input and thresholds: exact counts keep a few tokens back, estimates a share."""

from __future__ import annotations

from dataclasses import replace

from tokenwindow.counting import counter_for
from tokenwindow.messages import Message
from tokenwindow.models import ModelRegistry, ModelSpec
from tokenwindow.settings import load_settings
from tokenwindow.window import (
    Pressure,
    context_fallback,
    estimate_margin_ratio,
    tool_schema_tokens,
    window_for,
)

EXACT = ModelSpec("m", "openai/m", "openai", 100_000, 4_000, "o200k_base", True)


def test_exact_model_keeps_a_few_tokens() -> None:
    settings = load_settings(exact_margin_tokens=16)
    window = window_for(EXACT, settings)
    assert window.margin == 16
    assert window.usable_input == 100_000 - 4_000 - 16
    assert window.soft == int(window.usable_input * 0.75)
    assert window.hard == int(window.usable_input * 0.95)
    assert window.target == int(window.usable_input * 0.5)


def test_estimated_model_holds_back_a_share_of_the_window() -> None:
    settings = load_settings(exact_margin_tokens=0, estimate_margin_ratio=0.1)
    spec = replace(EXACT, provider="gemini", exact=False)
    assert window_for(spec, settings).margin == 10_000


def test_provider_margin_overrides_the_global_one() -> None:
    settings = load_settings(estimate_margin_ratio=0.1, estimate_margin_ratios={"anthropic": 0.2})
    anthropic = replace(EXACT, provider="anthropic", exact=False)
    assert estimate_margin_ratio(anthropic, settings) == 0.2
    assert estimate_margin_ratio(replace(anthropic, provider="gemini"), settings) == 0.1
    assert window_for(anthropic, settings).margin == 16 + 20_000


def test_default_anthropic_margin_is_wider_than_the_global_one() -> None:
    settings = load_settings()
    anthropic = replace(EXACT, provider="anthropic", exact=False)
    assert estimate_margin_ratio(anthropic, settings) > settings.estimate_margin_ratio


def test_requested_output_is_capped_by_the_model_and_margin_scales() -> None:
    settings = load_settings()
    assert window_for(EXACT, settings, max_output_tokens=1_000).reserved_output == 1_000
    assert window_for(EXACT, settings, max_output_tokens=50_000).reserved_output == 4_000
    assert window_for(EXACT, settings, margin_scale=2.0).margin == 32


def test_pressure_levels() -> None:
    window = window_for(EXACT, load_settings())
    assert window.pressure(window.soft) is Pressure.OK
    assert window.pressure(window.soft + 1) is Pressure.SOFT
    assert window.pressure(window.hard + 1) is Pressure.HARD


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}


def test_tool_schemas_are_reserved_from_usable_input() -> None:
    settings = load_settings(exact_margin_tokens=16)
    cost = tool_schema_tokens(EXACT, [WEATHER_TOOL])
    window = window_for(EXACT, settings, tools_tokens=cost)
    assert cost > 20
    assert window.tools_tokens == cost
    assert window.usable_input == 100_000 - 4_000 - 16 - cost
    assert window.target == int(window.usable_input * 0.5)


def test_schema_cost_never_undercounts_a_request_with_a_system_message() -> None:
    counter = counter_for(EXACT)
    messages: list[Message] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    with_tools = counter.count_messages(messages, [WEATHER_TOOL])
    assert with_tools - counter.count_messages(messages) <= tool_schema_tokens(
        EXACT, [WEATHER_TOOL]
    )
    assert tool_schema_tokens(EXACT, None) == 0


def test_context_fallback_is_the_first_larger_model_that_holds_the_turn() -> None:
    settings = load_settings(exact_margin_tokens=16)
    small = replace(EXACT, name="small", max_input_tokens=4_000, max_output_tokens=500)
    medium = replace(EXACT, name="medium", max_input_tokens=8_000, max_output_tokens=500)
    big = replace(EXACT, name="big", max_input_tokens=128_000, max_output_tokens=4_000)
    small = replace(small, context_window_fallbacks=("medium", "big"))
    registry = ModelRegistry([small, medium, big])
    assert context_fallback(small, 6_000, registry, settings) == medium
    assert context_fallback(small, 60_000, registry, settings) == big
    assert context_fallback(small, 500_000, registry, settings) is None
    assert context_fallback(big, 6_000, registry, settings) is None
    tools = 7_000
    assert context_fallback(small, 6_000, registry, settings, tools_tokens=tools) == big
