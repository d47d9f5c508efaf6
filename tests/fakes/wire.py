"""Types shared by the provider wire formats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ParsedRequest:
    """The parts of a chat request the fake acts on, whatever the provider's format."""

    model: str
    messages: list[dict[str, Any]]
    """OpenAI-shaped messages (Anthropic's ``system`` becomes a system message) for counting."""
    stream: bool
    max_tokens: int | None
    include_usage: bool = False


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Frame:
    """One server-sent event; ``text`` marks frames that carry reply text (faults count them)."""

    data: bytes
    text: bool = False
