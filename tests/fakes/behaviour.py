"""What a fake provider does: replies, scripted faults, a context limit, and what it received.

Kept apart from the HTTP code so the same state can be driven in-process (``server.inject``)
or from another process (``POST /_control``) with identical semantics.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tokenwindow.counting import counter_for_encoding

ENCODING = "o200k_base"
"""Prompt tokens are counted with this encoding, the way OpenAI counts gpt-4o."""

FaultKind = Literal["status", "drop", "hang", "event"]


@dataclass(frozen=True)
class Fault:
    """One scripted failure, consumed by the next request that reaches the server.

    ``status``: answer ``status`` with the provider's real error body (``Retry-After`` set when
    ``retry_after`` is given; ``message`` replaces the provider's text). ``drop``: send
    ``after_chunks`` text chunks (half the body when not streaming), then close the connection
    mid-response. ``hang``: send ``after_chunks`` chunks, then go silent for ``seconds`` so
    the client times out. ``event``: send ``after_chunks`` chunks, then the provider's in-stream
    error event for ``status`` and end the stream cleanly (a non-streamed request gets the
    status error instead).
    """

    kind: FaultKind
    status: int = 500
    retry_after: float | None = None
    after_chunks: int = 0
    seconds: float = 30.0
    message: str | None = None

    @classmethod
    def error(
        cls, status: int, *, retry_after: float | None = None, message: str | None = None
    ) -> Fault:
        return cls("status", status=status, retry_after=retry_after, message=message)

    @classmethod
    def drop(cls, after_chunks: int = 2) -> Fault:
        return cls("drop", after_chunks=after_chunks)

    @classmethod
    def error_event(cls, status: int = 529, *, after_chunks: int = 2) -> Fault:
        return cls("event", status=status, after_chunks=after_chunks)

    @classmethod
    def hang(cls, seconds: float = 30.0, *, after_chunks: int = 0) -> Fault:
        return cls("hang", seconds=seconds, after_chunks=after_chunks)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        return cls(**data)


@dataclass(frozen=True)
class ToolCall:
    """One tool call a scripted reply makes; ``id`` is made up per wire format when None."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    """A scripted reply: text, tool calls, or both (text first, as the real APIs send it)."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()

    @classmethod
    def from_json(cls, data: str | dict[str, Any]) -> Reply:
        """A ``/_control`` reply: a string, or ``{"text", "tool_calls": [{name, arguments}]}``."""
        if isinstance(data, str):
            return cls(data)
        calls = tuple(ToolCall(**call) for call in data.get("tool_calls", []))
        return cls(str(data.get("text", "")), calls)

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "tool_calls": [asdict(c) for c in self.tool_calls]}


@dataclass(frozen=True)
class RecordedRequest:
    """What one request carried, for assertions such as "nothing sent exceeded the window"."""

    api: Literal["openai", "anthropic", "gemini"]
    path: str
    model: str
    stream: bool
    messages: list[dict[str, Any]]
    prompt_tokens: int
    api_key: str | None
    body: dict[str, Any] = field(repr=False)
    tools: list[dict[str, Any]] | None = None
    """The request's tool schemas in the provider's own shape."""
    params: dict[str, Any] = field(default_factory=dict)
    """Every other request field (sampling, tool choice, stop, ...) in the provider's shape."""
    client_port: int = 0
    """The client's side of the connection: equal ports mean a reused connection."""


def message_text(message: dict[str, Any]) -> str:
    """Plain text of an OpenAI, Anthropic or (parsed) Gemini message (text parts joined)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def default_reply(messages: list[dict[str, Any]]) -> str:
    """Deterministic text derived from the last user message, so tests can predict it."""
    last = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    words = message_text(last).split() if last else []
    echoed = " ".join(words[:12]) or "nothing"
    return f"Fake reply to {len(messages)} messages. You said: {echoed}"


def split_words(text: str) -> list[str]:
    """Stream pieces: one word with its trailing space each, so pieces join back exactly."""
    return re.findall(r"\s*\S+\s*", text) or [text]


class Behaviour:
    """Thread-safe state shared by every request handler of one server."""

    def __init__(self, *, context_limit: int | None = None, token_delay: float = 0.0) -> None:
        self._lock = threading.Lock()
        self.context_limit = context_limit
        self.token_delay = token_delay
        self._faults: deque[Fault] = deque()
        self._replies: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []

    def configure(
        self,
        *,
        context_limit: int | None = None,
        token_delay: float | None = None,
        unlimited: bool = False,
    ) -> None:
        """Change the limit or delay; ``unlimited=True`` removes the context limit."""
        with self._lock:
            if context_limit is not None or unlimited:
                self.context_limit = context_limit
            if token_delay is not None:
                self.token_delay = token_delay

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each is used by exactly one later request, in order."""
        with self._lock:
            self._faults.extend(faults)

    def queue_replies(self, *replies: str | Reply) -> None:
        """Queue canned replies; when the queue is empty the default reply is used."""
        with self._lock:
            self._replies.extend(Reply(r) if isinstance(r, str) else r for r in replies)

    def queue_tool_calls(self, *calls: ToolCall, text: str = "") -> None:
        """Queue one reply that calls ``calls`` (several make parallel calls)."""
        self.queue_replies(Reply(text, calls))

    def reset(self) -> None:
        """Forget faults, replies, limits, delays and recorded requests."""
        with self._lock:
            self._faults.clear()
            self._replies.clear()
            self._requests.clear()
            self.context_limit = None
            self.token_delay = 0.0

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def max_prompt_tokens(self) -> int:
        """Largest prompt any request carried (0 before the first request)."""
        return max((r.prompt_tokens for r in self.requests), default=0)

    def next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def next_reply(self, messages: list[dict[str, Any]]) -> Reply:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        return Reply(default_reply(messages))

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def snapshot(self) -> dict[str, Any]:
        """The recorded state as JSON, for ``GET /_control``."""
        return {
            "requests": [
                {k: v for k, v in asdict(r).items() if k != "body"} for r in self.requests
            ],
            "max_prompt_tokens": self.max_prompt_tokens,
            "context_limit": self.context_limit,
        }

    def control(self, command: dict[str, Any]) -> None:
        """Apply a ``POST /_control`` body: ``reset``, ``faults``, ``replies`` (strings or
        ``Reply.from_json`` objects, which script tool calls), limits."""
        if command.get("reset"):
            self.reset()
        if "context_limit" in command or "token_delay" in command:
            limit = command.get("context_limit")
            self.configure(
                context_limit=limit,
                token_delay=command.get("token_delay"),
                unlimited="context_limit" in command and limit is None,
            )
        self.inject(*(Fault.from_json(f) for f in command.get("faults", [])))
        self.queue_replies(*(Reply.from_json(r) for r in command.get("replies", [])))


def count_prompt(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens the way OpenAI bills gpt-4o (per-message framing included)."""
    return counter_for_encoding(ENCODING).count_messages(messages)  # type: ignore[arg-type]


def count_text(text: str) -> int:
    return counter_for_encoding(ENCODING).count_text(text)


def split_arguments(text: str, size: int = 7) -> list[str]:
    """Argument fragments as providers stream them: short runs that cut through tokens."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def truncate_reply(text: str, max_tokens: int | None) -> tuple[list[str], str]:
    """Split a reply into stream pieces, cut at ``max_tokens``; returns (pieces, finish)."""
    pieces = split_words(text)
    if max_tokens is None:
        return pieces, "stop"
    kept: list[str] = []
    used = 0
    for piece in pieces:
        used += count_text(piece)
        if used > max_tokens:
            return kept, "length"
        kept.append(piece)
    return kept, "stop"
