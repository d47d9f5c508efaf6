"""Token counting with OpenAI's published chat accounting, cached per message.

A message's count depends only on its encoding and content, so counts are memoised by content:
appending a turn to a long session costs that turn, not the history. A plain message (role,
text, maybe a name) is framing plus the count of its text, and only the text's count is cached,
keyed by the text itself or a digest of it, so a cache miss costs little more than encoding and
a hit costs a small fraction of it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import tiktoken

from tokenwindow.errors import InvalidInputError
from tokenwindow.images import DEFAULT_IMAGE_MODEL, image_count_is_exact, image_tokens
from tokenwindow.messages import SYSTEM_ROLES, Message, validate_messages
from tokenwindow.offline import prepare_offline_environment
from tokenwindow.tooldefs import render_tools

if TYPE_CHECKING:
    from tokenwindow.models import ModelSpec

TOKENS_PER_MESSAGE = 3
"""OpenAI's per-message framing (``<|start|>role ... <|end|>``)."""
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
"""Every reply is primed with ``<|start|>assistant<|message|>``."""
TOKENS_PER_TOOL_CALL = 3
"""Framing of one assistant tool (or legacy function) call around its name and arguments."""
TOOLS_OVERHEAD = 9
"""Added once when a request carries tool definitions."""
TOOLS_SYSTEM_DISCOUNT = 4
"""Subtracted when tools are present and so is a system message: the definitions share it."""
CACHE_SIZE = 100_000
"""Messages whose counts each counter remembers; oldest entries go first. With short texts kept
as their own keys this bounds the cache to about 50 MB per encoding."""
INLINE_KEY_CHARS = 256
"""Texts up to this length are cached under themselves (hashing a string is far cheaper than any
digest), longer ones under a digest."""
LONG_WHITESPACE = 4096
"""Whitespace runs at least this long are split without tiktoken's regex, whose backtracking
overflows the stack on runs of a few hundred thousand spaces (tiktoken 0.14 still panics)."""
OPAQUE_PARTS = frozenset(("input_audio", "file"))
"""Content parts whose tokens cannot be known offline: a count that includes one is an estimate."""

_LONG_RUN = re.compile(rf"\s{{{LONG_WHITESPACE},}}")
# Unicode White_Space, which is what tiktoken's regex engine means by \s.
_WS = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_WS_NOT_NEWLINE = r"\t\x0b\x0c \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_SAFE_CUT = re.compile(rf"[^{_WS}][{_WS_NOT_NEWLINE}]")
"""A non-space followed by a space other than CR/LF: no pre-token of either OpenAI encoding
spans that gap, and no pattern looks past it, so text cut there counts the same in two halves."""
_CUT_LOOKBACK = 4096


@functools.cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """Load an encoding from the on-disk cache; never downloads (see ``offline``)."""
    prepare_offline_environment()
    return tiktoken.get_encoding(name)


def _json_digest(message: Message) -> bytes:
    blob = json.dumps(message, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(blob.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def message_key(message: Message) -> str:
    """Stable content hash of a message (sorted-key JSON), for identity across processes."""
    return _json_digest(message).hex()


_TEXT_DIGEST = hashlib.blake2b(digest_size=16, person=b"text")
"""Copied per long text (cheaper than a new hasher); personalised so a text's digest never
equals a whole message's."""


def _text_key(text: str) -> bytes:
    digest = _TEXT_DIGEST.copy()
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.digest()


def _parts(messages: Iterable[Message]) -> Iterable[dict[str, Any]]:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            yield from (part for part in content if isinstance(part, dict))


def _image_of(part: dict[str, Any]) -> tuple[str, str]:
    """(url, detail) of an ``image_url`` part, in either of its shapes."""
    image = part.get("image_url")
    if isinstance(image, dict):
        return str(image.get("url", "")), str(image.get("detail", "auto"))
    return str(image), "auto"


def has_opaque_parts(messages: Iterable[Message]) -> bool:
    """True when some message holds audio or a file, whose count can only be estimated."""
    return any(part.get("type") in OPAQUE_PARTS for part in _parts(messages))


class TokenCounter:
    """Counts text and chat messages for one tiktoken encoding (and one model's image rule)."""

    def __init__(
        self, encoding_name: str, *, exact: bool = True, image_model: str = DEFAULT_IMAGE_MODEL
    ) -> None:
        self.encoding_name = encoding_name
        self.exact = exact
        self.image_model = image_model
        """litellm model name whose rule counts images (``tokenwindow.images``)."""
        self._encoding = get_encoding(encoding_name)
        self._cache: dict[Hashable, int] = {}
        self._short: dict[str, int] = {}

    def count_text(self, text: str) -> int:
        """Tokens in plain text; special-token strings count as ordinary text. Linear time."""
        if len(text) >= LONG_WHITESPACE and _LONG_RUN.search(text):
            return self._count_around_long_runs(text)
        return len(self._encoding.encode_ordinary(text))

    def _count_around_long_runs(self, text: str) -> int:
        """Count with Python-side splitting near long whitespace runs, tiktoken elsewhere."""
        total = start = 0
        for run in _LONG_RUN.finditer(text):
            if run.start() < start:
                continue
            left = start
            for cut in _SAFE_CUT.finditer(
                text, max(start, run.start() - _CUT_LOOKBACK), run.start() + 1
            ):
                left = cut.start() + 1
            after = _SAFE_CUT.search(text, run.end())
            right = after.start() + 1 if after else len(text)
            total += len(self._encoding.encode_ordinary(text[start:left]))
            total += self._count_split_in_python(text[left:right])
            start = right
        return total + len(self._encoding.encode_ordinary(text[start:]))

    def _count_split_in_python(self, text: str) -> int:
        try:
            return len(self._encoding._encode_only_native_bpe(text))
        except UnicodeEncodeError:  # lone surrogates: replace them, as encode_ordinary does
            fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return len(self._encoding._encode_only_native_bpe(fixed))

    def _count_short(self, text: str) -> int:
        """Roles and names repeat on every message: remember their counts."""
        tokens = self._short.get(text)
        if tokens is None:
            tokens = self.count_text(text)
            if len(self._short) < 10_000:
                self._short[text] = tokens
        return tokens

    def _count_part(self, part: Any) -> int:
        if not isinstance(part, dict):
            return self.count_text(str(part))
        kind = part.get("type")
        if kind == "text":
            return self.count_text(str(part.get("text", "")))
        if kind == "refusal":
            return self.count_text(str(part.get("refusal", "")))
        if kind == "image_url" and isinstance(part.get("image_url"), str | dict):
            return image_tokens(*_image_of(part), model=self.image_model)
        return 0  # audio and files: see OPAQUE_PARTS

    def _count_call(self, function: Any) -> int:
        if not isinstance(function, dict):
            return TOKENS_PER_TOOL_CALL
        name = str(function.get("name", ""))
        arguments = function.get("arguments", "")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        return TOKENS_PER_TOOL_CALL + self._count_short(name) + self.count_text(arguments)

    def _count_uncached(self, message: Message) -> int:
        tokens = TOKENS_PER_MESSAGE + self._count_short(str(message.get("role", "")))
        content = message.get("content")
        if isinstance(content, str):
            tokens += self.count_text(content)
        elif isinstance(content, list):
            tokens += sum(self._count_part(part) for part in content)
        if "name" in message:
            tokens += TOKENS_PER_NAME + self._count_short(str(message["name"]))
        for call in message.get("tool_calls") or ():
            tokens += self._count_call(call.get("function") if isinstance(call, dict) else None)
        if "function_call" in message:
            tokens += self._count_call(message["function_call"])  # type: ignore[typeddict-item]
        refusal = message.get("refusal")
        if isinstance(refusal, str):
            tokens += self.count_text(refusal)
        return tokens

    def count_message(self, message: Message) -> int:
        """Tokens one message adds to a prompt, framing included (memoised by content).

        The ``tool_call_id`` of a tool result is not counted: only the result text reaches the
        prompt, which is also how litellm and the community counters account for it.
        """
        return self._count_all((message,))

    def _count_all(self, messages: Iterable[Message]) -> int:
        """Sum of message counts. Nearly every message of a prompt is a role and a string, and
        encoding the string is the only real work, so those take an inline path with as few
        lookups as possible; any other message goes through ``_count_other``.
        """
        cache, short = self._cache, self._short
        encode = self._encoding._core_bpe.encode_ordinary  # the public wrapper only adds a call
        total = 0
        for message in messages:
            content: Any = message.get("content")
            role: Any = message.get("role")
            if content.__class__ is not str or role.__class__ is not str or len(message) != 2:
                total += self._count_other(message)
                continue
            # Short texts cannot hold a long whitespace run, so they skip count_text's guard.
            if len(content) <= INLINE_KEY_CHARS:
                tokens = cache.get(content)
                if tokens is None:
                    try:
                        tokens = len(encode(content))
                    except UnicodeEncodeError:  # lone surrogates
                        tokens = self.count_text(content)
                    cache[content] = tokens
                    if len(cache) > CACHE_SIZE:
                        self._evict()
            else:
                tokens = self._count_text_cached(content)
            role_tokens = short.get(role)
            if role_tokens is None:
                role_tokens = self._count_short(role)
            total += TOKENS_PER_MESSAGE + role_tokens + tokens
        return total

    def _count_text_cached(self, text: str) -> int:
        key = text if len(text) <= INLINE_KEY_CHARS else _text_key(text)
        tokens = self._cache.get(key)
        if tokens is None:
            tokens = self._cache[key] = self.count_text(text)
            self._evict()
        return tokens

    def _count_other(self, message: Message) -> int:
        """A named plain message is framing plus its cached text; anything else is cached whole."""
        content = message.get("content")
        if isinstance(content, str) and len(message) == 3 and message.keys() >= {"role", "name"}:
            tokens = TOKENS_PER_MESSAGE + self._count_short(str(message["role"]))
            tokens += self._count_text_cached(content)
            name = message["name"]
            if name is not None:
                tokens += TOKENS_PER_NAME + self._count_short(str(name))
            return tokens
        return self._count_cached(message)

    def _count_cached(self, message: Message) -> int:
        key = _json_digest(message)
        tokens = self._cache.get(key)
        if tokens is None:
            tokens = self._cache[key] = self._count_uncached(message)
            self._evict()
        return tokens

    def _evict(self) -> None:
        """Drop the oldest entry once the cache is full."""
        cache = self._cache
        if len(cache) > CACHE_SIZE:
            # No lock: if another thread evicts at the same moment, this one just skips.
            with contextlib.suppress(RuntimeError, StopIteration, KeyError):
                del cache[next(iter(cache))]

    def count_tools(self, tools: Sequence[Any], messages: Sequence[Message] = ()) -> int:
        """Tokens the tool definitions add to a request with these messages.

        OpenAI appends a newline to the first system message when tools are present, which can
        change how that message's last characters tokenize, so the difference is counted here.
        The rendered schemas' count comes from the counter's cache: an agent sends the same
        tools on every turn, and each turn counts them at ingest and again at generation.
        """
        if not tools:
            return 0
        tokens = self._count_text_cached(render_tools(list(tools))) + TOOLS_OVERHEAD
        system = next((m for m in messages if m.get("role") in SYSTEM_ROLES), None)
        if system is not None:
            tokens -= TOOLS_SYSTEM_DISCOUNT
            content = system.get("content")
            if isinstance(content, str):
                tokens += self.count_text(content + "\n") - self.count_text(content)
        return tokens

    def images_exact(self, messages: Iterable[Message]) -> bool:
        """False when some image's count is an estimate (no published rule, or no size)."""
        return all(
            image_count_is_exact(*_image_of(part), model=self.image_model)
            for part in _parts(messages)
            if part.get("type") == "image_url"
        )

    def count_messages(
        self, messages: Sequence[Message], tools: Sequence[Any] | None = None
    ) -> int:
        """Prompt tokens for a full request: every message, the tools, and the reply priming."""
        total = REPLY_PRIMING + self._count_all(messages)
        return total + self.count_tools(tools or (), messages)


@functools.cache
def counter_for_encoding(
    encoding_name: str, exact: bool = True, image_model: str = DEFAULT_IMAGE_MODEL
) -> TokenCounter:
    """One shared counter (and so one shared cache) per encoding and image rule in a process."""
    return TokenCounter(encoding_name, exact=exact, image_model=image_model)


def counter_for(spec: ModelSpec) -> TokenCounter:
    """The shared counter for a model's tokenizer and its own image rule."""
    return counter_for_encoding(spec.encoding, spec.exact, spec.litellm_model)


def count_request(
    model: str,
    *,
    text: str | None = None,
    messages: list[Any] | None = None,
    tools: list[Any] | None = None,
) -> dict[str, Any]:
    """Count a text or a chat request for ``model``: the one entry point of the CLI, the
    ``count_tokens`` task, the client and the gateway, so all of them give the same answer.

    Raises ``UnknownModelError`` for a model not in the registry and ``InvalidInputError`` for
    empty or malformed input, naming the field.
    """
    from tokenwindow.models import get_registry

    if (text is None) == (messages is None):
        raise InvalidInputError("input: give exactly one of text or messages")
    spec = get_registry().get(model)
    counter = counter_for(spec)
    exact = spec.exact
    if text is not None:
        if not isinstance(text, str):
            raise InvalidInputError(f"text: must be a string, got {type(text).__name__}")
        if tools:
            raise InvalidInputError("tools: only allowed with messages")
        if not text:
            raise InvalidInputError("text: must not be empty")
        tokens = counter.count_text(text)
    else:
        if tools is not None and not isinstance(tools, list):
            raise InvalidInputError(f"tools: must be a list, got {type(tools).__name__}")
        checked = validate_messages(messages)
        tokens = counter.count_messages(checked, tools)
        exact = exact and not has_opaque_parts(checked) and counter.images_exact(checked)
    kind = "tiktoken" if exact else "estimate"
    return {
        "model": spec.name,
        "tokens": tokens,
        "exact": exact,
        "method": f"{kind}:{spec.encoding}",
        "encoding": spec.encoding,
        "max_input_tokens": spec.max_input_tokens,
        "max_output_tokens": spec.max_output_tokens,
    }
