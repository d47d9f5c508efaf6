"""The built-in ``tokenwindow-offline`` model: a litellm custom provider with no key and no network.

It runs through litellm's real completion and streaming code path, so the demo and keyless users
exercise the same gateway as paying ones. The reply is deterministic, labelled as offline, and
built only from the conversation it was given.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from tokenwindow.counting import counter_for_encoding
from tokenwindow.offline import prepare_offline_environment

# litellm must never load before the offline defaults are in place (see tokenwindow.offline).
prepare_offline_environment()

from litellm.llms.custom_llm import CustomLLM  # noqa: E402
from litellm.types.utils import GenericStreamingChunk, ModelResponse, Usage  # noqa: E402

PROVIDER = "tokenwindow"
"""litellm provider prefix: ``tokenwindow/offline`` routes here."""
LABEL = "[offline model]"
ENCODING = "o200k_base"
MAX_ECHO_WORDS = 40
MAX_KEY_TERMS = 6
_TERM = re.compile(r"\d[\d.,:/-]*\d|\d|[A-Z][\w'-]+|\w{8,}")


@dataclass(frozen=True)
class OfflineReply:
    pieces: list[str]
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def key_terms(words: list[str]) -> Iterator[str]:
    """Numbers, names (capitalised mid-sentence) and long words, in order of appearance."""
    previous = "."
    for word in words:
        match = _TERM.search(word)
        sentence_start = previous.endswith((".", "!", "?", ":"))
        if match and not (sentence_start and match.group(0)[0].isupper()):
            yield match.group(0)
        previous = word


def compose_reply(messages: list[dict[str, Any]]) -> str:
    """An extractive answer: how much was seen, the gist of the last user turn, its key terms."""
    user_turns = [m for m in messages if m.get("role") == "user"]
    words = _text(user_turns[-1]).split() if user_turns else []
    gist = " ".join(words[:MAX_ECHO_WORDS]) + (" ..." if len(words) > MAX_ECHO_WORDS else "")
    terms = list(dict.fromkeys(key_terms(words)))[:MAX_KEY_TERMS]
    parts = [
        f"{LABEL} I read {len(messages)} messages ({len(user_turns)} from you).",
        f'Your last message: "{gist}".' if gist else "There is no user message to answer.",
    ]
    if terms:
        parts.append(f"Key terms: {', '.join(terms)}.")
    return " ".join(parts)


def reply_for(messages: list[dict[str, Any]], max_tokens: int | None) -> OfflineReply:
    """The reply split into word pieces and cut at ``max_tokens``, with exact token counts."""
    counter = counter_for_encoding(ENCODING)
    pieces = re.findall(r"\s*\S+", compose_reply(messages))
    kept: list[str] = []
    finish: Literal["stop", "length"] = "stop"
    for piece in pieces:
        if max_tokens is not None and counter.count_text("".join([*kept, piece])) > max_tokens:
            finish = "length"
            break
        kept.append(piece)
    return OfflineReply(
        pieces=kept,
        finish_reason=finish,
        prompt_tokens=counter.count_messages(messages),  # type: ignore[arg-type]
        completion_tokens=counter.count_text("".join(kept)),
    )


def _max_tokens(optional_params: dict[str, Any]) -> int | None:
    value = optional_params.get("max_tokens") or optional_params.get("max_completion_tokens")
    return int(value) if value is not None else None


def _chunks(reply: OfflineReply) -> Iterator[GenericStreamingChunk]:
    for piece in reply.pieces:
        yield GenericStreamingChunk(text=piece, is_finished=False, finish_reason="", usage=None)
    yield GenericStreamingChunk(
        text="",
        is_finished=True,
        finish_reason=reply.finish_reason,
        usage={
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    )


class OfflineLLM(CustomLLM):
    """litellm handler for ``tokenwindow/offline``; ignores keys, bases and timeouts."""

    def completion(  # type: ignore[override]
        self,
        model: str,
        messages: list[dict[str, Any]],
        *args: Any,
        model_response: ModelResponse,
        optional_params: dict[str, Any],
        **kwargs: Any,
    ) -> ModelResponse:
        reply = reply_for(messages, _max_tokens(optional_params))
        model_response.model = f"{PROVIDER}/{model}"
        choice = model_response.choices[0]
        choice.message.content = reply.text
        choice.finish_reason = reply.finish_reason
        model_response.usage = Usage(  # type: ignore[attr-defined]
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            total_tokens=reply.prompt_tokens + reply.completion_tokens,
        )
        return model_response

    def streaming(  # type: ignore[override]
        self,
        model: str,
        messages: list[dict[str, Any]],
        *args: Any,
        optional_params: dict[str, Any],
        **kwargs: Any,
    ) -> Iterator[GenericStreamingChunk]:
        return _chunks(reply_for(messages, _max_tokens(optional_params)))

    async def acompletion(  # type: ignore[override]
        self,
        model: str,
        messages: list[dict[str, Any]],
        *args: Any,
        model_response: ModelResponse,
        optional_params: dict[str, Any],
        **kwargs: Any,
    ) -> ModelResponse:
        return self.completion(
            model, messages, model_response=model_response, optional_params=optional_params
        )

    async def astreaming(  # type: ignore[override]
        self,
        model: str,
        messages: list[dict[str, Any]],
        *args: Any,
        optional_params: dict[str, Any],
        **kwargs: Any,
    ) -> AsyncIterator[GenericStreamingChunk]:
        for chunk in self.streaming(model, messages, optional_params=optional_params):
            yield chunk


def register(litellm_module: Any) -> None:
    """Add the offline provider to litellm once; called when the gateway first loads litellm."""
    providers = litellm_module.custom_provider_map
    if not any(item["provider"] == PROVIDER for item in providers):
        providers.append({"provider": PROVIDER, "custom_handler": OfflineLLM()})
