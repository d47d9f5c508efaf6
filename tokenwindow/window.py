"""How many input tokens a model may be sent, and when to compress.

Usable input = ``max_input_tokens`` - reserved output - safety margin - the request's tool
schemas (sent with every request, so never available to messages). The margin is a few
tokens for exact counts and a share of the window for estimated ones, because an estimate can be
off by several percent on any single request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tokenwindow.counting import counter_for
from tokenwindow.models import ModelRegistry, ModelSpec
from tokenwindow.settings import Settings


class Pressure(StrEnum):
    """Where a prompt sits relative to the thresholds; drives the turn pipeline's decision."""

    OK = "ok"
    SOFT = "soft"
    HARD = "hard"


@dataclass(frozen=True)
class Window:
    """Token thresholds for one model under the current settings."""

    usable_input: int
    soft: int
    hard: int
    target: int
    reserved_output: int
    margin: int
    tools_tokens: int = 0
    """Tokens of the request's tool schemas, already taken out of ``usable_input``."""

    def pressure(self, prompt_tokens: int) -> Pressure:
        if prompt_tokens > self.hard:
            return Pressure.HARD
        if prompt_tokens > self.soft:
            return Pressure.SOFT
        return Pressure.OK


def estimate_margin_ratio(spec: ModelSpec, settings: Settings) -> float:
    """Share of the window held back for an estimated count: the provider's own, else global."""
    return settings.estimate_margin_ratios.get(spec.provider, settings.estimate_margin_ratio)


def window_for(
    spec: ModelSpec,
    settings: Settings,
    *,
    max_output_tokens: int | None = None,
    margin_scale: float = 1.0,
    tools_tokens: int = 0,
) -> Window:
    """Thresholds for ``spec``; ``margin_scale`` > 1 widens the margin after a provider overflow.

    ``tools_tokens`` (from ``tool_schema_tokens``) is reserved like the output: every threshold
    and the compression target are shares of what is left for messages.
    """
    reserved = min(max_output_tokens or spec.max_output_tokens, spec.max_output_tokens)
    base_margin = settings.exact_margin_tokens
    if not spec.exact:
        base_margin += int(spec.max_input_tokens * estimate_margin_ratio(spec, settings))
    margin = int(base_margin * margin_scale)
    usable = max(spec.max_input_tokens - reserved - margin - tools_tokens, 1)
    return Window(
        usable_input=usable,
        soft=int(usable * settings.soft_threshold),
        hard=int(usable * settings.hard_threshold),
        target=max(int(usable * settings.target_ratio), 1),
        reserved_output=reserved,
        margin=margin,
        tools_tokens=tools_tokens,
    )


def tool_schema_tokens(spec: ModelSpec, tools: Sequence[Any] | None) -> int:
    """What a request's ``tools`` cost ``spec``'s window, for ``window_for(tools_tokens=...)``.

    Counted without the messages: with a system message OpenAI's count is a few tokens lower,
    so this errs on the safe side. Raises ``InvalidInputError`` for a malformed schema.
    """
    return counter_for(spec).count_tools(tools or ())


def context_fallback(
    spec: ModelSpec,
    needed: int,
    registry: ModelRegistry,
    settings: Settings,
    *,
    max_output_tokens: int | None = None,
    tools_tokens: int = 0,
) -> ModelSpec | None:
    """The first of ``spec.context_window_fallbacks`` whose usable input holds ``needed`` tokens.

    ``needed`` is what the turn cannot go below without cutting a message (for example
    ``strategies.clearing.floor_after_clearing``), counted for ``spec``; None when no fallback
    is configured or none is large enough. Unknown names were refused when the file loaded.
    """
    for name in spec.context_window_fallbacks:
        bigger = registry.get(name)
        window = window_for(
            bigger, settings, max_output_tokens=max_output_tokens, tools_tokens=tools_tokens
        )
        if needed <= window.usable_input:
            return bigger
    return None
