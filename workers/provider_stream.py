"""Streamed provider replies for asyncio callers: text and tool-call deltas, then usage.

This path goes through ``litellm.acompletion(stream=True)``; errors come out as the service's
provider errors, mapped by ``workers.llm.map_error``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from tokenwindow.messages import Message
from tokenwindow.models import ModelSpec
from tokenwindow.settings import Settings
from workers.llm import CompletionUsage, load_litellm, map_error, request_for


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    id: str | None
    name: str | None
    arguments: str
    """A fragment of the call's JSON arguments."""


@dataclass(frozen=True, slots=True)
class StreamDelta:
    text: str
    tool_calls: tuple[ToolCallDelta, ...] = ()


class ProviderStream:
    """Async iterator of ``StreamDelta``; ``finish_reason`` and ``usage`` are set by the end."""

    def __init__(self, spec: ModelSpec, messages: list[Message], chunks: Any) -> None:
        self._spec = spec
        self._messages = messages
        self._chunks: AsyncIterator[Any] = chunks.__aiter__()
        self.finish_reason: str | None = None
        self.usage: CompletionUsage | None = None

    def __aiter__(self) -> ProviderStream:
        return self

    async def __anext__(self) -> StreamDelta:
        while True:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                raise
            except Exception as exc:
                raise map_error(exc, self._spec, self._messages) from None
            usage = getattr(chunk, "usage", None)
            if usage is not None:
                self.usage = CompletionUsage(usage.prompt_tokens, usage.completion_tokens)
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            self.finish_reason = choice.finish_reason or self.finish_reason
            calls = tuple(
                ToolCallDelta(
                    index=call.index or 0,
                    id=call.id,
                    name=call.function.name if call.function else None,
                    arguments=(call.function.arguments or "") if call.function else "",
                )
                for call in choice.delta.tool_calls or ()
            )
            text = choice.delta.content or ""
            if text or calls:
                return StreamDelta(str(text), calls)

    async def aclose(self) -> None:
        close = getattr(self._chunks, "aclose", None)
        if close is not None:
            await close()


async def open_stream(
    spec: ModelSpec, messages: list[Message], params: Mapping[str, Any], *, settings: Settings
) -> ProviderStream:
    """Send the request; status errors raise here as provider errors."""
    litellm = load_litellm()
    request = request_for(spec, messages, dict(params), settings)
    try:
        chunks = await litellm.acompletion(
            **request, stream=True, stream_options={"include_usage": True}
        )
    except Exception as exc:
        raise map_error(exc, spec, messages) from None
    return ProviderStream(spec, messages, chunks)
