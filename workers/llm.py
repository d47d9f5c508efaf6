"""The LLM gateway: every provider call goes through litellm here, and every failure comes out
as one of ``tokenwindow.errors``' provider errors.

litellm is imported on first use, after the offline defaults are set, so importing this module
stays cheap. litellm's own retries are off: Celery owns retries, with backoff and idempotency.
Error messages carry the model name, the kind of failure and the provider's own explanation,
never prompt text.
"""

from __future__ import annotations

import email.utils
import functools
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypedDict, Unpack

from strategies.summary import summary_prompt
from tokenwindow.errors import (
    ContextWindowExceededError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    SummarizerError,
)
from tokenwindow.messages import Message, text_of
from tokenwindow.models import ModelSpec
from tokenwindow.offline import prepare_offline_environment
from tokenwindow.settings import Settings, get_settings

CONTEXT_OVERFLOW = re.compile(
    r"context length|context window|maximum context|prompt is too long|input is too long|"
    r"too many (?:input )?tokens",
    re.IGNORECASE,
)
"""How providers word a too-long prompt when litellm does not classify it for us."""
MAX_DETAIL_CHARS = 300
QUOTE_NGRAM = 4
"""A provider message sharing this many consecutive words with the prompt is withheld."""


@dataclass(frozen=True)
class CompletionUsage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    usage: CompletionUsage | None
    tool_calls: tuple[dict[str, Any], ...] = ()
    """OpenAI-shaped ``{"id", "type", "function": {"name", "arguments"}}`` calls."""


# --- litellm, loaded once --------------------------------------------------------------------
@functools.cache
def load_litellm() -> ModuleType:
    """Import and set up litellm once per process (workers do it at pool start)."""
    prepare_offline_environment()
    import litellm

    from workers import offline_model

    litellm.suppress_debug_info = True
    offline_model.register(litellm)
    return litellm


def api_key_for(spec: ModelSpec, settings: Settings) -> str | None:
    """The spec's own key, else the provider's key from settings."""
    if spec.api_key:
        return spec.api_key
    secret = {
        "openai": settings.openai_api_key,
        "anthropic": settings.anthropic_api_key,
        "gemini": settings.google_api_key,
        "google": settings.google_api_key,
    }.get(spec.provider)
    return secret.get_secret_value() if secret is not None else None


@functools.cache
def provider_faults() -> tuple[type[BaseException], ...]:
    """What a provider call raises besides our own errors: litellm's exceptions (the OpenAI
    SDK's tree and its per-provider ``BaseLLMException``), transport errors, and bad data.

    Catching these instead of ``Exception`` lets a Celery soft time limit pass through.
    """
    load_litellm()  # first: it sets the offline defaults litellm reads on import
    import httpx
    import openai
    from litellm.llms.base_llm.chat.transformation import BaseLLMException

    return (
        openai.OpenAIError,
        BaseLLMException,
        httpx.HTTPError,
        OSError,
        ValueError,
        LookupError,
        TypeError,
    )


class RequestOptions(TypedDict, total=False):
    """What a caller may set on one provider request."""

    max_tokens: int | None
    temperature: float | None
    timeout: float | None
    settings: Settings | None
    params: Mapping[str, Any] | None
    """Further OpenAI chat parameters, checked by ``tokenwindow.params.check_chat_params``."""


@functools.cache
def _gemini_stream_client(timeout: float) -> Any:
    """litellm opens Gemini streams with its own client, whose 600 s read timeout ignores the
    request's ``timeout``; lend it one that honours ours so a stalled stream times out."""
    from litellm.llms.custom_httpx.http_handler import HTTPHandler

    return HTTPHandler(timeout=timeout)


def request_for(
    spec: ModelSpec, messages: list[Message], params: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    """litellm keyword arguments for one call: the models file's other litellm_params as they
    are, our defaults, the model's endpoint, then the call's own params."""
    timeout = params.pop("timeout", None)
    configured = spec.call_params
    request: dict[str, Any] = {
        **configured,
        "model": spec.litellm_model,
        "messages": messages,
        "timeout": timeout or configured.get("timeout") or settings.provider_timeout_seconds,
        "num_retries": 0,
        "max_retries": 0,
    }
    optional = {"api_base": spec.api_base, "api_key": api_key_for(spec, settings), **params}
    request.update({k: v for k, v in optional.items() if v is not None})
    return request


def _send(spec: ModelSpec, messages: list[Message], options: RequestOptions, **extra: Any) -> Any:
    """One ``litellm.completion`` call with our defaults; provider errors become ours."""
    litellm = load_litellm()
    settings = options.get("settings") or get_settings()
    params = {
        "timeout": options.get("timeout"),
        "max_tokens": options.get("max_tokens"),
        "temperature": options.get("temperature"),
        **(options.get("params") or {}),
    }
    request = request_for(spec, messages, params, settings)
    if extra.get("stream") and spec.litellm_model.startswith("gemini/"):
        request["client"] = _gemini_stream_client(request["timeout"])
    try:
        return litellm.completion(**request, **extra)
    except provider_faults() as exc:
        raise map_error(exc, spec, messages) from None


# --- calls -------------------------------------------------------------------------------------
class CompletionStream(Iterator[str]):
    """Text deltas of one streamed reply; ``usage`` and ``finish_reason`` are set by the end.

    A stream that breaks mid-way raises a retryable ``ProviderUnavailableError`` (or
    ``ProviderTimeoutError`` when it stalls) instead of ending quietly.
    """

    def __init__(self, spec: ModelSpec, messages: list[Message], chunks: Any) -> None:
        self._spec = spec
        self._messages = messages
        self._chunks = iter(chunks)
        self.usage: CompletionUsage | None = None
        self.finish_reason: str | None = None

    def __next__(self) -> str:
        while True:
            try:
                chunk = next(self._chunks)
            except StopIteration:  # the normal end, not a provider failure
                raise
            except provider_faults() as exc:
                raise map_error(exc, self._spec, self._messages) from None
            usage, choice = read_chunk(chunk)
            if usage is not None:
                self.usage = usage
            if choice is None:
                continue
            self.finish_reason = choice.finish_reason or self.finish_reason
            text = choice.delta.content
            if text:
                return str(text)


def read_chunk(chunk: Any) -> tuple[CompletionUsage | None, Any]:
    """A litellm stream chunk's usage, where it carries one, and its first choice (or None)."""
    usage = getattr(chunk, "usage", None)
    counted = (
        CompletionUsage(usage.prompt_tokens, usage.completion_tokens) if usage is not None else None
    )
    return counted, (chunk.choices[0] if chunk.choices else None)


def stream_completion(
    spec: ModelSpec, messages: list[Message], **options: Unpack[RequestOptions]
) -> CompletionStream:
    """Start a streamed completion; the request is sent now, so status errors raise here
    (litellm opens Gemini streams on the first read, so theirs raise from the iterator)."""
    chunks = _send(spec, messages, options, stream=True, stream_options={"include_usage": True})
    return CompletionStream(spec, messages, chunks)


def generate(
    spec: ModelSpec, messages: list[Message], **options: Unpack[RequestOptions]
) -> Completion:
    """One non-streamed completion with its finish reason and usage."""
    response = _send(spec, messages, options)
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    calls = tuple(
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.function.name, "arguments": call.function.arguments},
        }
        for call in choice.message.tool_calls or ()
    )
    return Completion(
        text=str(choice.message.content or ""),
        finish_reason=choice.finish_reason,
        usage=CompletionUsage(usage.prompt_tokens, usage.completion_tokens) if usage else None,
        tool_calls=calls,
    )


# --- summarizer adapter ------------------------------------------------------------------------
class LLMSummarizer:
    """A ``strategies.base.Summarizer`` backed by a model through this gateway.

    The request is ``strategies.summary.summary_prompt``, the same one compression measured.
    A reply cut at ``max_tokens`` or empty is a ``SummarizerError``: a partial summary would
    silently lose facts. Provider errors propagate unchanged so the summarization task can
    retry the transient ones.
    """

    def __init__(
        self, spec: ModelSpec, settings: Settings | None = None, *, temperature: float = 0.0
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.temperature = temperature

    def __call__(
        self, messages: list[Message], *, previous_summary: str | None, max_tokens: int
    ) -> str:
        request = summary_prompt(messages, previous_summary=previous_summary, max_tokens=max_tokens)
        result = generate(
            self.spec,
            request,
            max_tokens=max_tokens,
            temperature=self.temperature,
            settings=self.settings,
        )
        if result.finish_reason == "length":
            raise SummarizerError(f"{self.spec.name}: summary was cut at {max_tokens} tokens")
        summary = result.text.strip()
        if not summary:
            raise SummarizerError(f"{self.spec.name}: returned an empty summary")
        return summary


# --- error mapping -----------------------------------------------------------------------------
def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        inner = getattr(current, "original_exception", None)
        if isinstance(inner, BaseException):
            current = inner
        else:
            current = current.__cause__ or current.__context__


def _headers(exc: BaseException) -> Mapping[str, str]:
    for source in (
        getattr(exc, "headers", None),
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        if source:
            return {str(k).lower(): str(v) for k, v in source.items()}
    return {}


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


RETRY_DELAY = re.compile(r'"retryDelay":\s*"(\d+(?:\.\d+)?)s"')
"""Google APIs say when to retry in a ``google.rpc.RetryInfo`` error detail, not a header."""


def _retry_delay(exc: BaseException) -> float | None:
    for cause in _causes(exc):
        match = RETRY_DELAY.search(str(getattr(cause, "message", None) or cause))
        if match:
            return float(match.group(1))
    return None


def _provider_message(exc: BaseException) -> str:
    """The provider's own explanation, dug out of litellm's wrapped message."""
    text = str(getattr(exc, "message", None) or exc)
    text = text.split(" Original exception:", 1)[0]
    text = re.sub(r"\.? Handle with `litellm\.\w+`\.?", "", text)
    match = re.search(r"(?:Exception|Error) - (.*)", text, re.DOTALL)
    detail = match.group(1) if match else text
    body = re.search(r"\{.*\}", detail, re.DOTALL)
    if body:
        try:
            data = json.loads(body.group(0))
        except ValueError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            detail = error["message"]
    detail = " ".join(detail.split())
    return detail[:MAX_DETAIL_CHARS]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def quotes_prompt(detail: str, messages: list[Message]) -> bool:
    """True if ``detail`` repeats a run of prompt words (or a whole short message)."""
    detail_words = _words(detail)
    grams = {
        tuple(detail_words[i : i + QUOTE_NGRAM]) for i in range(len(detail_words) - QUOTE_NGRAM + 1)
    }
    joined = " " + " ".join(detail_words) + " "
    for message in messages:
        words = _words(text_of(message))
        if not words:
            continue
        if len(words) < QUOTE_NGRAM:
            if f" {' '.join(words)} " in joined:
                return True
            continue
        if any(
            tuple(words[i : i + QUOTE_NGRAM]) in grams for i in range(len(words) - QUOTE_NGRAM + 1)
        ):
            return True
    return False


def _is_timeout(exc: BaseException) -> bool:
    import httpx
    from litellm import exceptions as errors

    return any(
        isinstance(e, errors.Timeout | httpx.TimeoutException | TimeoutError) for e in _causes(exc)
    )


def map_error(exc: BaseException, spec: ModelSpec, messages: list[Message]) -> ProviderError:
    """Translate a litellm (or transport) exception into the service's provider error."""
    import httpx
    from litellm import exceptions as errors

    status = getattr(exc, "status_code", None)
    detail = _provider_message(exc)
    if detail and quotes_prompt(detail, messages):
        detail = "(provider message withheld: it quotes the prompt)"

    def say(what: str) -> str:
        code = f" (HTTP {status})" if isinstance(status, int) else ""
        return f"{spec.name}: {what}{code}" + (f": {detail}" if detail else "")

    if isinstance(exc, errors.ContextWindowExceededError):
        return ContextWindowExceededError(say("prompt exceeds the context window"))
    if isinstance(exc, errors.MidStreamFallbackError):
        inner = exc.original_exception
        if exc.is_pre_first_chunk and isinstance(inner, Exception) and not _is_timeout(exc):
            # Lazily opened streams (Gemini) report a refused request here: classify the refusal.
            return map_error(inner, spec, messages)
        if _is_timeout(exc):
            return ProviderTimeoutError(f"{spec.name}: stream stalled past the timeout")
        return ProviderUnavailableError(f"{spec.name}: stream broke before it finished")
    if _is_timeout(exc):
        return ProviderTimeoutError(f"{spec.name}: no answer within the timeout")
    if isinstance(exc, errors.RateLimitError):
        retry_after = retry_after_seconds(_headers(exc))
        return ProviderRateLimitError(
            say("rate limited"),
            retry_after=retry_after if retry_after is not None else _retry_delay(exc),
        )
    # litellm reports some 403s (e.g. OpenAI's unsupported region) as BadRequestError.
    if status in (401, 403) or isinstance(
        exc, errors.AuthenticationError | errors.PermissionDeniedError
    ):
        return ProviderAuthError(say("credentials rejected"))
    if isinstance(exc, errors.BadRequestError | errors.UnprocessableEntityError):
        if CONTEXT_OVERFLOW.search(detail):
            return ContextWindowExceededError(say("prompt exceeds the context window"))
        return ProviderBadRequestError(say("request rejected"))
    if isinstance(exc, errors.NotFoundError):
        return ProviderBadRequestError(say("model or endpoint not found"))
    if isinstance(exc, errors.APIConnectionError | httpx.TransportError | OSError):
        return ProviderUnavailableError(say("connection failed"))
    if isinstance(status, int) and status >= 500:
        return ProviderUnavailableError(say("provider unavailable"))
    if isinstance(
        exc,
        errors.InternalServerError | errors.ServiceUnavailableError | errors.BadGatewayError,
    ):
        return ProviderUnavailableError(say("provider unavailable"))
    return ProviderError(say(f"unexpected {type(exc).__name__}"))
