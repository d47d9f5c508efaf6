"""What one streamed provider chunk carries, the same for every provider."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of one tool call: ``id`` and ``name`` come with its first piece (Anthropic,
    OpenAI) or all at once with the whole ``arguments`` (Gemini); later pieces carry only
    ``index`` and an ``arguments`` fragment. Joining fragments by index gives the JSON text."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """Reply text and tool-call pieces that arrived in one provider chunk."""

    text: str
    tool_calls: tuple[ToolCallDelta, ...] = ()
