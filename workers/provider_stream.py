"""Streamed completions for an asyncio event loop serving hundreds of streams at once.

``open_stream`` sends the request litellm would send (built by ``workers.provider_request``
from litellm's per-provider configs) on one shared ``httpx.AsyncClient`` per event loop, and
reads the SSE answer with ``workers.provider_chunks``: a fifth to a tenth of litellm's CPU per
chunk, about what raw httpx costs (``python -m bench chunk_cost``). Providers without a fast
reader (custom providers, the built-in offline model, Anthropic with ``response_format``)
stream through ``litellm.acompletion`` behind the same interface. Either way every failure is one of
``tokenwindow.errors``' provider errors, mapped by ``workers.llm.map_error`` exactly as for
litellm's own calls.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import httpx

from tokenwindow.errors import ProviderError, ProviderTimeoutError, ProviderUnavailableError
from tokenwindow.messages import Message
from tokenwindow.models import ModelSpec
from tokenwindow.settings import Settings
from workers.llm import CompletionUsage, api_key_for, load_litellm, map_error, provider_faults
from workers.provider_chunks import READERS, ChunkReader, normalise_finish
from workers.provider_request import ProviderRequest, build_request, fast_wire
from workers.stream_deltas import StreamDelta, ToolCallDelta

__all__ = [
    "ProviderStream",
    "StreamDelta",
    "ToolCallDelta",
    "close_shared_client",
    "open_litellm_stream",
    "open_stream",
    "shared_client",
]

SHARDS = 16
"""The loop's connections are spread over this many clients: httpcore's pool scans all of its
connections whenever a request starts or ends, which at 500 streams in one pool costs more
than reading the stream."""
MAX_CONNECTIONS = 2_000 // SHARDS
"""Each stream holds one HTTP/1.1 connection; the pools must never be what limits a worker."""
MAX_KEEPALIVE = 512 // SHARDS
KEEPALIVE_SECONDS = 30.0

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)
_turns = itertools.count()


def shared_client() -> httpx.AsyncClient:
    """One of the running loop's clients, in turn (connection pools cannot cross loops).

    Timeouts are set per request from settings, so one client serves every model.
    """
    loop = asyncio.get_running_loop()
    clients = _clients.get(loop)
    if clients is None:
        clients = _clients[loop] = [_new_client() for _ in range(SHARDS)]
    index = next(_turns) % SHARDS
    if clients[index].is_closed:
        clients[index] = _new_client()
    return clients[index]


def _new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        limits=httpx.Limits(
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_KEEPALIVE,
            keepalive_expiry=KEEPALIVE_SECONDS,
        ),
        timeout=None,
    )


async def close_shared_client() -> None:
    """Close the running loop's clients (at worker shutdown): kept-alive connections go."""
    for client in _clients.pop(asyncio.get_running_loop(), []):
        await client.aclose()


def _timeout(settings: Settings) -> httpx.Timeout:
    """Connect and every read bounded by ``provider_timeout_seconds``: a stalled stream fails."""
    seconds = settings.provider_timeout_seconds
    return httpx.Timeout(seconds, pool=None)


class ProviderStream:
    """The deltas of one streamed reply; ``finish_reason`` and ``usage`` are set by the end.

    A stream that breaks mid-way raises a retryable ``ProviderUnavailableError``; one that
    stalls past the timeout raises ``ProviderTimeoutError``.
    """

    finish_reason: str | None = None
    usage: CompletionUsage | None = None

    def __aiter__(self) -> ProviderStream:
        return self

    async def __anext__(self) -> StreamDelta:
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
    """Reads SSE ``data:`` payloads off the response and feeds them to a chunk reader."""

    def __init__(
        self,
        spec: ModelSpec,
        messages: list[Message],
        response: httpx.Response,
        reader: ChunkReader,
    ) -> None:
        self._spec = spec
        self._messages = messages
        self._response = response
        self._bytes = _body_chunks(response)
        self._reader = reader
        self._tail = b""
        self._lines: list[bytes] = []
        self._line = 0
        self._data: list[bytes] = []
        self._ended = False
        self._done = False
        self._finished = False
        self._saw_tool_calls = False

    async def __anext__(self) -> StreamDelta:
        if self._finished:
            raise StopAsyncIteration
        reader = self._reader
        try:
            while True:
                event = await self._next_event()
                if event is None:
                    break
                delta = reader.feed(event)
                if delta is not None:
                    if delta.tool_calls:
                        self._saw_tool_calls = True
                    return delta
        except ProviderError:
            await self.aclose()
            raise
        except httpx.TimeoutException:
            await self.aclose()
            stalled = f"{self._spec.name}: stream stalled past the timeout"
            raise ProviderTimeoutError(stalled) from None
        except httpx.TransportError:
            await self.aclose()
            broke = f"{self._spec.name}: stream broke before it finished"
            raise ProviderUnavailableError(broke) from None
        except provider_faults() as exc:  # an error event, or an event that does not parse
            await self.aclose()
            raise _mapped(exc, self._spec, self._messages) from None
        self._finished = True
        await self.aclose()
        if reader.raw_finish is None:
            raise ProviderUnavailableError(f"{self._spec.name}: stream broke before it finished")
        reader.finish()
        self.usage = reader.usage
        self.finish_reason = normalise_finish(
            reader.raw_finish, saw_tool_calls=self._saw_tool_calls
        )
        raise StopAsyncIteration

    async def _next_event(self) -> dict[str, Any] | None:
        """The next ``data:`` payload as JSON; None at the end of the body (SSE events end
        at a blank line; lines split on LF, a CR before it dropped)."""
        while True:
            lines = self._lines
            while self._line < len(lines):
                line = lines[self._line]
                self._line += 1
                if line.endswith(b"\r"):
                    line = line[:-1]
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
                    continue
                if not self._done:
                    event: dict[str, Any] = json.loads(payload)
                    return event
            if self._ended:
                return None
            try:
                chunk = await self._bytes.__anext__()
            except StopAsyncIteration:
                # Read to the end so the connection goes back to the pool; a last event
                # without its blank line still counts.
                self._ended = True
                chunk = b"\n\n"
            lines = (self._tail + chunk).split(b"\n")
            self._tail = lines.pop()
            self._lines = lines
            self._line = 0

    async def aclose(self) -> None:
        self._finished = True
        await self._response.aclose()


def _body_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as it arrives. Unencoded bodies (SSE always is, in practice) are read straight
    off the transport stream: httpx's decoding and chunking layers are a third of the calls
    per chunk and have nothing to do. Timeouts and error mapping live below, in httpcore and
    httpx's transport, and still apply."""
    if response.headers.get("content-encoding", "identity") == "identity":
        return cast(httpx.AsyncByteStream, response.stream).__aiter__()
    return response.aiter_bytes()


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


async def _refusal(request: ProviderRequest, response: httpx.Response) -> Exception:
    body = await response.aread()
    await response.aclose()
    return request.config.get_error_class(  # type: ignore[no-any-return]
        error_message=body.decode(errors="replace"),
        status_code=response.status_code,
        headers=response.headers,
    )


async def _open_fast(
    request: ProviderRequest, spec: ModelSpec, messages: list[Message], settings: Settings
) -> ProviderStream:
    client = shared_client()
    sent = client.build_request(
        "POST",
        request.url,
        headers=request.headers,
        content=request.body,
        timeout=_timeout(settings),
    )
    try:
        response = await client.send(sent, stream=True)
    except httpx.HTTPError as exc:
        raise map_error(exc, spec, messages) from None
    if response.status_code >= 400:
        try:
            refusal = await _refusal(request, response)
        except httpx.HTTPError as exc:
            raise map_error(exc, spec, messages) from None
        raise _mapped(refusal, spec, messages)
    reader = READERS[request.wire](request.config, request.tool_names)
    return _SSEStream(spec, messages, response, reader)


# --- litellm's own path, for providers without a fast reader -------------------------------
class _LiteLLMStream(ProviderStream):
    """``litellm.acompletion(stream=True)`` chunks as deltas."""

    def __init__(self, spec: ModelSpec, messages: list[Message], chunks: Any) -> None:
        self._spec = spec
        self._messages = messages
        self._chunks: AsyncIterator[Any] = chunks.__aiter__()
        self._wrapper = chunks
        self._saw_tool_calls = False
        self._raw_finish: str | None = None

    async def __anext__(self) -> StreamDelta:
        while True:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self.finish_reason = normalise_finish(
                    self._raw_finish, saw_tool_calls=self._saw_tool_calls
                )
                raise
            except provider_faults() as exc:
                raise map_error(exc, self._spec, self._messages) from None
            usage = getattr(chunk, "usage", None)
            if usage is not None:
                self.usage = CompletionUsage(usage.prompt_tokens, usage.completion_tokens)
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            self._raw_finish = choice.finish_reason or self._raw_finish
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
                self._saw_tool_calls = True
            if text or calls:
                return StreamDelta(str(text), calls)

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
    return await _open_fast(request, spec, messages, settings)
