"""One attempt at a reply: what it says, and which of it subscribers have not seen yet.

A redelivered or retried completion regenerates from the start. While its text matches what
earlier attempts published, nothing is re-sent; past that point only new text goes out. If it
diverges (or earlier attempts had published tool calls, which cannot be matched piecewise),
the turn restarts: consumers are told to drop this turn's output so far, and it is sent again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from workers.provider_stream import StreamDelta

Action = tuple[Literal["token", "tool", "reset"], Any]
"""("token", text) | ("tool", {index, id, name, arguments}) | ("reset", None)."""


@dataclass
class ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""

    def openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class ReplyTracker:
    """Feeds deltas in, yields the publishing actions that keep delivery exactly-once.

    Each delta costs its own length: only the part that overlaps earlier-published text is
    compared, and the text is joined once, at the end.
    """

    published: str
    tools_published: bool = False
    calls: dict[int, ToolCall] = field(default_factory=dict)
    _parts: list[str] = field(default_factory=list)
    _length: int = 0
    _sent: int = -1
    _restarted: bool = False

    def __post_init__(self) -> None:
        self._sent = len(self.published)

    @property
    def text(self) -> str:
        joined = "".join(self._parts)
        self._parts = [joined]
        return joined

    def _restart(self) -> list[Action]:
        self._restarted, self._sent = True, 0
        return [("reset", None)]

    def _resend_all(self) -> list[Action]:
        actions = self._restart()
        if self._length:
            actions.append(("token", self.text))
            self._sent = self._length
        return actions

    def feed(self, delta: StreamDelta) -> list[Action]:
        actions: list[Action] = []
        if delta.text:
            start, piece = self._length, delta.text
            self._parts.append(piece)
            self._length += len(piece)
            if not self._restarted and start < len(self.published):
                seen = self.published[start : start + len(piece)]
                if not piece.startswith(seen):
                    actions += self._resend_all()
            if self._length > self._sent:
                # Only the tail of this piece is new to subscribers.
                actions.append(("token", piece[len(piece) - (self._length - self._sent) :]))
                self._sent = self._length
        for fragment in delta.tool_calls:
            if not self._restarted and (self.tools_published or self._length < self._sent):
                actions += self._resend_all()
            call = self.calls.setdefault(fragment.index, ToolCall())
            call.id = call.id or (fragment.id or "")
            call.name = call.name or (fragment.name or "")
            call.arguments += fragment.arguments
            fields = {
                "index": fragment.index,
                "call_id": fragment.id,
                "name": fragment.name,
                "arguments": fragment.arguments,
            }
            actions.append(("tool", fields))
        return actions

    def end(self) -> list[Action]:
        """The attempt ended inside text an earlier one had shown: replace, don't leave extra."""
        stale_tools = self.tools_published and not self.calls
        if self._restarted or (self._length >= len(self.published) and not stale_tools):
            return []
        return self._resend_all()

    def tool_calls(self) -> list[dict[str, Any]]:
        return [self.calls[i].openai() for i in sorted(self.calls)]
