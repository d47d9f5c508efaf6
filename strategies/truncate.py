"""Cutting the middle out of one message, with a marker saying so.

The start of a message usually states the task and the end the latest detail, so the middle
is what goes; the marker keeps the cut visible to the model and to anyone auditing the window.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tokenwindow.counting import TokenCounter, get_encoding
from tokenwindow.messages import Message

MARKER = "\n[... {n} tokens cut here to fit the context window ...]\n"


def _text_slot(message: Message) -> tuple[str, Callable[[str], Message]] | None:
    """The message's largest text and a function that puts a replacement back."""
    content = message.get("content")
    if isinstance(content, str):
        return content, lambda text: {**message, "content": text}
    if isinstance(content, list):
        texts = [
            (len(p.get("text") or ""), k) for k, p in enumerate(content) if p.get("type") == "text"
        ]
        if texts:
            _, k = max(texts)
            parts: list[dict[str, Any]] = content

            def put(text: str) -> Message:
                return {
                    **message,
                    "content": [*parts[:k], {**parts[k], "text": text}, *parts[k + 1 :]],
                }

            return str(parts[k]["text"]), put
    return None


def cut_middle(message: Message, target: int, counter: TokenCounter) -> Message | None:
    """``message`` cut to at most ``target`` tokens (or as far as cutting goes).

    None when the message has no text to cut (e.g. only tool calls).
    """
    slot = _text_slot(message)
    if slot is None:
        return None
    text, put = slot
    encoding = get_encoding(counter.encoding_name)
    tokens = encoding.encode_ordinary(text)
    keep = len(tokens) - (counter.count_message(message) - target)
    while True:
        keep = max(keep, 0)
        head, tail = (keep + 1) // 2, keep // 2
        cut = encoding.decode(tokens[:head]) + MARKER.format(n=len(tokens) - keep)
        cut += encoding.decode(tokens[len(tokens) - tail :]) if tail else ""
        candidate = put(cut)
        size = counter.count_message(candidate)
        if size <= target or keep == 0:
            return candidate
        keep -= size - target
