"""Folding one turn's events into its reply: text, tool calls, finish reason, provider usage.

Every consumer that shows a whole reply (the client's ``create_completion``, the gateway's
non-streamed answers and the bookkeeping of its streams) folds events the same way, so a
``turn_restarted`` drops the abandoned attempt's text everywhere instead of joining it to the
new attempt's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tokenwindow.errors import TurnFailedError
from tokenwindow.events import Event, EventType

TOOL_CALL_EVENT = "tool_call"
"""Event type of one tool-call fragment: ``index``, ``call_id`` and ``name`` (on a call's first
fragment; ``id`` is every event's stream entry id), ``arguments`` (a piece of its JSON text)."""
RESTARTED = "turn_restarted"
"""Error code of a stream that had shown text of an attempt that was then abandoned."""
RESTARTED_MESSAGE = (
    "the reply was restarted after a worker failure and the text already sent is void; "
    "send the request again"
)


@dataclass
class ReplyAssembler:
    """Feed a turn's events in order; read the reply once ``done``."""

    parts: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Tool calls assembled from ``tool_call`` fragments, by index."""
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    """The provider's figures from ``turn_completed``; ``None`` when it reported none."""
    completed_calls: list[dict[str, Any]] | None = None
    done: bool = False

    def feed(self, event: Event) -> None:
        """Apply one event; a ``turn_failed`` raises ``TurnFailedError``."""
        kind = event["type"]
        if kind == EventType.TOKEN:
            self.parts.append(event["text"])
        elif kind == TOOL_CALL_EVENT:
            self._fragment(event)
        elif kind == EventType.TURN_RESTARTED:
            self.parts.clear()
            self.calls.clear()
        elif kind == EventType.TURN_COMPLETED:
            self._complete(event)
        elif kind == EventType.TURN_FAILED:
            raise TurnFailedError(
                event.get("code", "error"),
                event.get("message", ""),
                retry_after=event.get("retry_after"),
            )

    def _fragment(self, event: Event) -> None:
        call = self.calls.setdefault(
            int(event["index"]),
            {"id": None, "type": "function", "function": {"name": None, "arguments": ""}},
        )
        if event.get("call_id"):
            call["id"] = event["call_id"]
        if event.get("name"):
            call["function"]["name"] = event["name"]
        call["function"]["arguments"] += event.get("arguments") or ""

    def _complete(self, event: Event) -> None:
        self.done = True
        self.finish_reason = event.get("finish_reason")
        if "prompt_tokens" in event and "completion_tokens" in event:
            prompt, completion = int(event["prompt_tokens"]), int(event["completion_tokens"])
            self.usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        if event.get("tool_calls"):
            self.completed_calls = list(event["tool_calls"])

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The calls as ``turn_completed`` reported them, else as their fragments built them."""
        if self.completed_calls is not None:
            return self.completed_calls
        return [self.calls[index] for index in sorted(self.calls)]

    def result(self) -> dict[str, Any]:
        """The reply fields ``create_completion`` returns."""
        return {
            "content": self.text,
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "tool_calls": self.tool_calls,
        }
