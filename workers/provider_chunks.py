"""Lean readers of the three streaming wire formats: one parsed SSE event in, a delta out.

litellm's per-provider chunk parsers build a pydantic ``ModelResponseStream`` for every chunk,
and its stream wrapper then copies it again; that is most of the ~600 us litellm spends per
chunk. These readers take the few fields a turn needs (text, tool-call pieces) straight from
the event dict, and hand the rare events whose meaning litellm owns (usage, finish reasons,
Gemini function calls, error events) to litellm's own helpers, so figures and mappings match
what litellm reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workers.llm import CompletionUsage
from workers.stream_deltas import StreamDelta, ToolCallDelta


class ChunkReader:
    """Reads one stream's events; ``raw_finish`` and ``usage`` are known by its end."""

    def __init__(self, config: Any, tool_names: Mapping[str, str]) -> None:
        self.config = config
        self.tool_names = tool_names
        self.raw_finish: str | None = None
        self.usage: CompletionUsage | None = None

    def feed(self, event: dict[str, Any]) -> StreamDelta | None:
        """The text and tool-call pieces of ``event``, or None when it carries neither."""
        raise NotImplementedError

    def finish(self) -> None:
        """Called once at the end of the stream (usage computed from what was kept)."""

    def error(self, message: str, status: int) -> Exception:
        """The provider's own litellm error class, as litellm raises for an error event."""
        return self.config.get_error_class(  # type: ignore[no-any-return]
            error_message=message, status_code=status, headers={}
        )


class OpenAIChunks(ChunkReader):
    """``chat.completion.chunk`` events: ``choices[0].delta`` and a final usage chunk."""

    def feed(self, event: dict[str, Any]) -> StreamDelta | None:
        error = event.get("error")
        if error:
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            status = code if isinstance(code, int) and 400 <= code < 600 else 500
            raise self.error(str(message or error), status)
        usage = event.get("usage")
        if usage:
            self.usage = CompletionUsage(usage["prompt_tokens"], usage["completion_tokens"])
        choices = event.get("choices")
        if not choices:
            return None
        choice = choices[0]
        finish = choice.get("finish_reason")
        if finish:
            if finish == "abort":
                raise self.error("Upstream generation aborted (finish_reason=abort)", 500)
            self.raw_finish = finish
        delta = choice.get("delta")
        if not delta:
            return None
        text = delta.get("content") or ""
        calls = delta.get("tool_calls")
        if calls:
            pieces = []
            for call in calls:
                function = call.get("function") or {}
                pieces.append(
                    ToolCallDelta(
                        call.get("index", 0),
                        call.get("id"),
                        function.get("name"),
                        function.get("arguments") or "",
                    )
                )
            return StreamDelta(text, tuple(pieces))
        return StreamDelta(text) if text else None


class AnthropicChunks(ChunkReader):
    """Messages API events: text and ``tool_use`` content blocks, usage in start and delta."""

    def __init__(self, config: Any, tool_names: Mapping[str, str]) -> None:
        super().__init__(config, tool_names)
        self._tool_index = -1
        self._in_tool = False
        self._usage: dict[str, Any] = {}

    def feed(self, event: dict[str, Any]) -> StreamDelta | None:
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event["delta"]
            part = delta.get("type")
            if part == "text_delta":
                text = delta.get("text") or ""
                return StreamDelta(text) if text else None
            if part == "input_json_delta" and self._in_tool:
                fragment = delta.get("partial_json") or ""
                if fragment:
                    return StreamDelta("", (ToolCallDelta(self._tool_index, None, None, fragment),))
            return None
        if kind == "content_block_start":
            block = event["content_block"]
            self._in_tool = block.get("type") == "tool_use"
            if self._in_tool:
                self._tool_index += 1
                name = self.tool_names.get(block["name"], block["name"])
                return StreamDelta("", (ToolCallDelta(self._tool_index, block["id"], name, ""),))
            text = block.get("text") or "" if block.get("type") == "text" else ""
            return StreamDelta(text) if text else None
        if kind == "message_start":
            self._usage.update(event["message"].get("usage") or {})
        elif kind == "message_delta":
            self.raw_finish = event["delta"].get("stop_reason") or "stop"
            self._usage.update(event.get("usage") or {})
        elif kind == "error":
            error = event.get("error") or {}
            raise self.error(str(error.get("message") or event), 500)
        return None

    def finish(self) -> None:
        if self._usage:
            usage = self.config.calculate_usage(usage_object=self._usage, reasoning_content=None)
            self.usage = CompletionUsage(usage.prompt_tokens, usage.completion_tokens)


class GeminiChunks(ChunkReader):
    """``GenerateContentResponse`` events: text parts, whole ``functionCall`` parts, and
    ``usageMetadata`` that every event repeats (the last one counts)."""

    def __init__(self, config: Any, tool_names: Mapping[str, str]) -> None:
        super().__init__(config, tool_names)
        self._tool_index = 0
        self._last_usage: dict[str, Any] | None = None

    def feed(self, event: dict[str, Any]) -> StreamDelta | None:
        if "error" in event:
            from litellm.llms.vertex_ai.gemini.vertex_and_google_ai_studio_gemini import (
                ModelResponseIterator,
            )

            ModelResponseIterator._check_streaming_error(event)  # raises litellm's error
        if "usageMetadata" in event:
            self._last_usage = event
        candidates = event.get("candidates")
        if not candidates:
            if (event.get("promptFeedback") or {}).get("blockReason"):
                self.raw_finish = "content_filter"
            return None
        candidate = candidates[0]
        finish = candidate.get("finishReason")
        if finish:
            self.raw_finish = finish
        parts = (candidate.get("content") or {}).get("parts") or ()
        text = "".join(p["text"] for p in parts if "text" in p and not p.get("thought"))
        if not any("functionCall" in p for p in parts):
            return StreamDelta(text) if text else None
        _, calls, self._tool_index = self.config._transform_parts(
            parts, self._tool_index, is_function_call=False
        )
        pieces = tuple(
            ToolCallDelta(c["index"], c["id"], c["function"]["name"], c["function"]["arguments"])
            for c in calls or ()
        )
        return StreamDelta(text, pieces)

    def finish(self) -> None:
        if self._last_usage is not None:
            usage = self.config.calculate_usage(completion_response=self._last_usage)
            self.usage = CompletionUsage(usage.prompt_tokens, usage.completion_tokens)


READERS: dict[str, type[ChunkReader]] = {
    "openai": OpenAIChunks,
    "anthropic": AnthropicChunks,
    "gemini": GeminiChunks,
}


def normalise_finish(raw: str | None, *, saw_tool_calls: bool) -> str | None:
    """OpenAI's finish names, as litellm's stream wrapper reports them."""
    if raw is None:
        return None
    from litellm.litellm_core_utils.core_helpers import map_finish_reason

    finish = str(map_finish_reason(raw))
    return "tool_calls" if finish == "stop" and saw_tool_calls else finish
