"""Types shared by the provider wire formats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.fakes.behaviour import ToolCall


@dataclass(frozen=True)
class ParsedRequest:
    """The parts of a chat request the fake acts on, whatever the provider's format."""

    model: str
    messages: list[dict[str, Any]]
    """OpenAI-shaped messages (Anthropic's ``system`` becomes a system message) for counting."""
    stream: bool
    max_tokens: int | None
    include_usage: bool = False
    tools: list[dict[str, Any]] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    """Every field besides messages, model and streaming switches, as the provider got it."""


def other_fields(body: dict[str, Any], *handled: str) -> dict[str, Any]:
    """``body`` without the fields the fake interprets itself."""
    return {k: v for k, v in body.items() if k not in handled and k != "tools"}


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Outcome:
    """What the fake answers one request with: reply pieces, why it stopped, usage, calls."""

    pieces: list[str]
    finish: str
    usage: Usage
    calls: tuple[ToolCall, ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass(frozen=True)
class Frame:
    """One server-sent event; ``text`` marks frames that carry reply text (faults count them)."""

    data: bytes
    text: bool = False
