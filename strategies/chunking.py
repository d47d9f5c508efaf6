"""Keep a summarizer's own input inside its model's window: map, then reduce.

A span too long for one call is cut into chunks that fit (a single huge message is split), each
chunk is summarized, and the partial summaries are summarized in turn until one call suffices.
Sizes are measured on ``summary_prompt``, the exact request an LLM summarizer sends.
"""

from __future__ import annotations

from strategies.base import Summarizer
from strategies.summary import render_transcript, summary_message, summary_prompt
from tokenwindow.counting import TokenCounter, get_encoding
from tokenwindow.errors import SummarizerError
from tokenwindow.messages import Message, text_of

PART_SHARE = 3
"""A partial summary may use 1/PART_SHARE of a chunk, so every reduce round shrinks the input."""
MIN_PART_TOKENS = 16


class Chunked:
    """Wraps any ``Summarizer`` so no single call gets more than ``max_input_tokens``."""

    def __init__(self, summarize: Summarizer, counter: TokenCounter, max_input_tokens: int):
        self.summarize = summarize
        self.counter = counter
        self.max_input_tokens = max_input_tokens

    def _size(self, messages: list[Message], previous: str | None, max_tokens: int) -> int:
        prompt = summary_prompt(messages, previous_summary=previous, max_tokens=max_tokens)
        return self.counter.count_messages(prompt)

    def _call(self, messages: list[Message], previous: str | None, max_tokens: int) -> str:
        text = self.summarize(messages, previous_summary=previous, max_tokens=max_tokens)
        size = self.counter.count_text(text)
        if size > max_tokens:
            raise SummarizerError(f"summary of {size} tokens exceeds the {max_tokens} asked for")
        return text

    def _pieces(self, messages: list[Message], limit: int) -> list[Message]:
        """Messages, with any whose rendering exceeds ``limit`` split into consecutive parts."""
        encoding = get_encoding(self.counter.encoding_name)
        pieces: list[Message] = []
        for message in messages:
            if self.counter.count_text(render_transcript([message])) <= limit:
                pieces.append(message)
                continue
            tokens = encoding.encode_ordinary(text_of(message))
            framing = self.counter.count_text(render_transcript([{**message, "content": ""}]))
            step = max(limit - framing - 8, 1)
            for start in range(0, len(tokens), step):
                text = encoding.decode(tokens[start : start + step])
                pieces.append({"role": message["role"], "content": text})
        return pieces

    def _chunks(self, pieces: list[Message], capacity: int, max_tokens: int) -> list[list[Message]]:
        """Consecutive pieces packed greedily; a chunk that measures too big is halved."""
        chunks: list[list[Message]] = []
        current: list[Message] = []
        used = 0
        for piece in pieces:
            size = self.counter.count_text(render_transcript([piece])) + 1
            if current and used + size > capacity:
                chunks.append(current)
                current, used = [], 0
            current.append(piece)
            used += size
        chunks.append(current)
        fitted: list[list[Message]] = []
        while chunks:
            chunk = chunks.pop(0)
            if len(chunk) > 1 and self._size(chunk, None, max_tokens) > self.max_input_tokens:
                half = len(chunk) // 2
                chunks[:0] = [chunk[:half], chunk[half:]]
            else:
                fitted.append(chunk)
        return fitted

    def __call__(
        self, messages: list[Message], *, previous_summary: str | None, max_tokens: int
    ) -> str:
        if self._size(messages, previous_summary, max_tokens) <= self.max_input_tokens:
            return self._call(messages, previous_summary, max_tokens)
        capacity = self.max_input_tokens - self._size([], None, max_tokens)
        framing = self.counter.count_text(render_transcript([summary_message("")]))
        part_tokens = min(max_tokens, capacity // PART_SHARE - framing)
        if part_tokens < MIN_PART_TOKENS:
            raise SummarizerError(
                f"max_input_tokens {self.max_input_tokens} leaves no room to summarize in parts"
            )
        span = ([summary_message(previous_summary)] if previous_summary else []) + messages
        pieces = self._pieces(span, capacity // PART_SHARE)
        parts = [
            summary_message(self._call(chunk, None, part_tokens))
            for chunk in self._chunks(pieces, capacity, max_tokens)
        ]
        return self(parts, previous_summary=None, max_tokens=max_tokens)


def chunked(summarize: Summarizer, counter: TokenCounter, max_input_tokens: int) -> Summarizer:
    """``summarize`` made safe for inputs of any length (see ``Chunked``)."""
    return Chunked(summarize, counter, max_input_tokens)
