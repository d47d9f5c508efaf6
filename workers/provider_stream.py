"""Streamed completions for an asyncio event loop serving hundreds of streams at once.

``open_stream`` sends the request litellm would send (built by ``workers.provider_request``
from litellm's per-provider configs) on a kept-alive connection of the loop's own
(``workers.http_stream``), and reads the SSE answer with ``workers.provider_chunks`` in the
connection's callbacks: a chunk costs one callback, a fraction of what raw httpx spends
(``python -m bench chunk_cost``). Providers without a fast reader (custom providers, the
built-in offline model, Anthropic with ``response_format``) and URLs the environment sends
through a proxy stream through ``litellm.acompletion`` behind the same interface. Either way
every failure is one of ``tokenwindow.errors``' provider errors, mapped by
``workers.llm.map_error`` exactly as for litellm's own calls.

A stream is pushed, not pulled: ``await stream.pump(sink)`` calls ``sink`` with each delta as
it arrives and returns at the end of the reply.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx

from tokenwindow.errors import ProviderError, ProviderTimeoutError, ProviderUnavailableError
from tokenwindow.messages import Message
from tokenwindow.models import ModelSpec
from tokenwindow.settings import Settings
from workers import http_stream
from workers.http_stream import HTTPStallError
from workers.llm import (
    CompletionUsage,
    api_key_for,
    load_litellm,
    map_error,
    provider_faults,
    read_chunk,
)
from workers.provider_chunks import READERS, ChunkReader, normalise_finish
from workers.provider_request import ProviderRequest, build_request, fast_wire
from workers.stream_deltas import StreamDelta, ToolCallDelta

__all__ = [
    "DeltaSink",
    "ProviderStream",
    "StreamDelta",
    "ToolCallDelta",
    "open_litellm_stream",
    "open_stream",
]

DeltaSink = Callable[[StreamDelta], None]
"""Called with each delta as it arrives; what it raises ends the stream and comes out of
``pump``."""


class ProviderStream:
    """One streamed reply; ``finish_reason`` and ``usage`` are set once ``pump`` returns.

    A stream that breaks mid-way raises a retryable ``ProviderUnavailableError``; one that
    stalls past the timeout raises ``ProviderTimeoutError``.
    """

    finish_reason: str | None = None
    usage: CompletionUsage | None = None

    async def pump(self, sink: DeltaSink) -> None:
        """Hand every delta to ``sink`` until the reply ends; the connection is released
        however this ends (cancellation included)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release the connection; safe to call twice and after the end."""

    async def __aenter__(self) -> ProviderStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """``async with`` closes the stream however the block ends (cancellation included)."""
        await self.aclose()


# --- the fast path -------------------------------------------------------------------------
class _SSEStream(ProviderStream):
    """Splits the body into SSE ``data:`` payloads and feeds them to a chunk reader, inside the
    connection's ``data_received``."""

    def __init__(
        self,
        spec: ModelSpec,
        messages: list[Message],
        response: http_stream.Response,
        reader: ChunkReader,
    ) -> None:
        self._spec = spec
        self._messages = messages
        self._response = response
        self._reader = reader
        self._sink: DeltaSink = _unpumped
        self._tail = b""
        self._data: list[bytes] = []
        self._done = False
        self._saw_tool_calls = False

    async def pump(self, sink: DeltaSink) -> None:
        self._sink = sink
        name = self._spec.name
        try:
            await self._response.stream(self._feed)
            self._feed(b"\n\n")  # a last event without its blank line still counts
        except HTTPStallError:
            raise ProviderTimeoutError(f"{name}: stream stalled past the timeout") from None
        except ProviderError:
            raise
        except (OSError, httpx.TransportError):
            raise ProviderUnavailableError(f"{name}: stream broke before it finished") from None
        except provider_faults() as exc:  # an error event, or an event that does not parse
            raise _mapped(exc, self._spec, self._messages) from None
        finally:
            self._response.close()
        reader = self._reader
        if reader.raw_finish is None:
            raise ProviderUnavailableError(f"{name}: stream broke before it finished")
        reader.finish()
        self.usage = reader.usage
        self.finish_reason = normalise_finish(
            reader.raw_finish, saw_tool_calls=self._saw_tool_calls
        )

    def _feed(self, data: bytes) -> None:
        """SSE events end at a blank line; lines split on LF, a CR before it dropped."""
        lines = (self._tail + data if self._tail else data).split(b"\n")
        self._tail = lines.pop()
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if line:
                if line.startswith(b"data:"):
                    self._data.append(line[5:].lstrip(b" "))
                continue
            if not self._data:
                continue
            payload = b"\n".join(self._data) if len(self._data) > 1 else self._data[0]
            self._data = []
            if payload == b"[DONE]":
                self._done = True
            elif not self._done:
                delta = self._reader.feed(json.loads(payload))
                if delta is not None:
                    if delta.tool_calls:
                        self._saw_tool_calls = True
                    self._sink(delta)

    async def aclose(self) -> None:
        self._response.close()


def _unpumped(delta: StreamDelta) -> None:
    raise AssertionError("a delta arrived before pump() was called")


def _mapped(exc: BaseException, spec: ModelSpec, messages: list[Message]) -> ProviderError:
    """litellm's classification of a provider error, then ours (as for litellm's calls)."""
    from litellm.litellm_core_utils import exception_mapping_utils

    classify: Any = exception_mapping_utils.exception_type  # untyped in litellm
    try:
        classified = classify(
            model=spec.litellm_model.split("/", 1)[-1],
            original_exception=exc,
            custom_llm_provider=spec.litellm_model.split("/", 1)[0],
        )
    except provider_faults() as raised:
        classified = raised
    return map_error(classified, spec, messages)


async def _open_fast(
    request: ProviderRequest, spec: ModelSpec, messages: list[Message], settings: Settings
) -> ProviderStream:
    timeout = settings.provider_timeout_seconds
    try:
        response = await http_stream.send(
            "POST", request.url, request.headers, request.body, timeout=timeout
        )
        if response.status < 400:
            reader = READERS[request.wire](request.config, request.tool_names)
            return _SSEStream(spec, messages, response, reader)
        body = await response.read()
    except OSError as exc:
        raise map_error(exc, spec, messages) from None
    refusal = request.config.get_error_class(
        error_message=body.decode(errors="replace"),
        status_code=response.status,
        headers=httpx.Headers(response.headers),
    )
    raise _mapped(refusal, spec, messages)


# --- litellm's own path, for providers without a fast reader -------------------------------
class _LiteLLMStream(ProviderStream):
    """``litellm.acompletion(stream=True)`` chunks as deltas."""

    def __init__(self, spec: ModelSpec, messages: list[Message], chunks: Any) -> None:
        self._spec = spec
        self._messages = messages
        self._chunks: AsyncIterator[Any] = chunks.__aiter__()
        self._wrapper = chunks

    async def pump(self, sink: DeltaSink) -> None:
        saw_tool_calls, raw_finish = False, None
        try:
            async for chunk in self._chunks:
                usage, choice = read_chunk(chunk)
                if usage is not None:
                    self.usage = usage
                if choice is None:
                    continue
                raw_finish = choice.finish_reason or raw_finish
                text = choice.delta.content or ""
                calls = tuple(
                    ToolCallDelta(
                        call.index or 0,
                        call.id,
                        call.function.name if call.function else None,
                        (call.function.arguments if call.function else None) or "",
                    )
                    for call in choice.delta.tool_calls or ()
                )
                if calls:
                    saw_tool_calls = True
                if text or calls:
                    sink(StreamDelta(str(text), calls))
        except provider_faults() as exc:
            raise map_error(exc, self._spec, self._messages) from None
        finally:
            await self.aclose()
        self.finish_reason = normalise_finish(raw_finish, saw_tool_calls=saw_tool_calls)

    async def aclose(self) -> None:
        close = getattr(self._wrapper, "aclose", None)
        if close is not None:
            try:
                await close()
            except provider_faults():  # closing a failed stream must not mask its error
                return


async def open_litellm_stream(
    spec: ModelSpec, messages: list[Message], params: Mapping[str, Any], settings: Settings
) -> ProviderStream:
    """The same stream read through ``litellm.acompletion``: for providers without a fast
    reader, and as the reference the fast path is checked against."""
    litellm = load_litellm()
    request: dict[str, Any] = {
        **spec.call_params,
        "model": spec.litellm_model,
        "messages": messages,
        "timeout": settings.provider_timeout_seconds,
        "num_retries": 0,
        "max_retries": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **params,
    }
    if spec.api_base:
        request["api_base"] = spec.api_base
    key = api_key_for(spec, settings)
    if key:
        request["api_key"] = key
    try:
        chunks = await litellm.acompletion(**request)
    except provider_faults() as exc:
        raise map_error(exc, spec, messages) from None
    return _LiteLLMStream(spec, messages, chunks)


async def open_stream(
    spec: ModelSpec,
    messages: list[Message],
    params: Mapping[str, Any],
    *,
    settings: Settings,
) -> ProviderStream:
    """Send the request now and return its stream; a refusal (401, 429, 5xx, context
    length) raises here, before the first delta. ``params`` are OpenAI chat parameters
    already checked by ``tokenwindow.params.check_chat_params``."""
    wire = fast_wire(spec, params)
    if wire is None or spec.call_params:
        # The models file's other litellm_params (api_version, extra_headers, credentials)
        # are litellm's to apply: such a model streams through litellm itself.
        return await open_litellm_stream(spec, messages, params, settings)
    try:
        request = await build_request(wire, spec, messages, params, settings)
    except provider_faults() as exc:
        raise map_error(exc, spec, messages) from None
    if http_stream.proxied(request.url):
        return await open_litellm_stream(spec, messages, params, settings)
    return await _open_fast(request, spec, messages, settings)
