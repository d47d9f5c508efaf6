"""Token counting with OpenAI's published chat accounting, cached per message.

A message's count depends only on its encoding and content, so counts are memoised by
(encoding, content hash): appending a turn to a long session costs that turn, not the history.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import OrderedDict
from typing import Any

import tiktoken

from tokenwindow.messages import Message
from tokenwindow.offline import prepare_offline_environment

TOKENS_PER_MESSAGE = 3
"""OpenAI's per-message framing (``<|start|>role ... <|end|>``)."""
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
"""Every reply is primed with ``<|start|>assistant<|message|>``."""
CACHE_SIZE = 200_000


@functools.cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """Load an encoding from the on-disk cache; never downloads (see ``offline``)."""
    prepare_offline_environment()
    return tiktoken.get_encoding(name)


def message_key(message: Message) -> str:
    """Stable content hash of a message, the cache key for its count."""
    blob = json.dumps(message, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(blob.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class TokenCounter:
    """Counts text and chat messages for one tiktoken encoding."""

    def __init__(self, encoding_name: str, *, exact: bool = True) -> None:
        self.encoding_name = encoding_name
        self.exact = exact
        self._encoding = get_encoding(encoding_name)
        self._cache: OrderedDict[str, int] = OrderedDict()

    def count_text(self, text: str) -> int:
        """Tokens in plain text; special-token strings count as ordinary text."""
        return len(self._encoding.encode_ordinary(text))

    def _count_value(self, value: Any) -> int:
        if isinstance(value, str):
            return self.count_text(value)
        if isinstance(value, list):
            return sum(self._count_part(part) for part in value)
        if value is None:
            return 0
        return self.count_text(json.dumps(value, ensure_ascii=False))

    def _count_part(self, part: Any) -> int:
        if not isinstance(part, dict):
            return self._count_value(part)
        kind = part.get("type")
        if kind == "text":
            return self.count_text(str(part.get("text", "")))
        if kind == "refusal":
            return self.count_text(str(part.get("refusal", "")))
        return self.count_text(json.dumps(part, ensure_ascii=False))

    def _count_uncached(self, message: Message) -> int:
        tokens = TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "name":
                tokens += TOKENS_PER_NAME + self.count_text(str(value))
            elif key == "tool_calls":
                tokens += self.count_text(json.dumps(value, ensure_ascii=False))
            else:
                tokens += self._count_value(value)
        return tokens

    def count_message(self, message: Message) -> int:
        """Tokens one message adds to a prompt, framing included (memoised by content)."""
        key = message_key(message)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        tokens = self._count_uncached(message)
        self._cache[key] = tokens
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return tokens

    def count_messages(self, messages: list[Message]) -> int:
        """Prompt tokens for a full request: every message plus the reply priming."""
        return REPLY_PRIMING + sum(self.count_message(m) for m in messages)


@functools.cache
def counter_for_encoding(encoding_name: str, exact: bool = True) -> TokenCounter:
    """One shared counter (and so one shared cache) per encoding in a process."""
    return TokenCounter(encoding_name, exact=exact)
