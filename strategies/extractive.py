"""An extractive summarizer: no model, no network, deterministic.

Used when no LLM summarizer is configured and when the LLM one fails. It treats the summary as
a coverage problem: pick the sentences that add the most not-yet-covered content words (rare
words, names and numbers weigh more) per token, greedily, until ``max_tokens`` is spent. That
keeps many distinct facts rather than one topic's repetitions. Sentences keep their speaker and
session date, relative dates are resolved against it, filler words are dropped to fit more
facts, and the result reads in chronological order.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from strategies.summary import parse_summary
from strategies.text import (
    NEGATIONS,
    STOP_WORDS,
    content_words,
    find_date,
    format_date,
    resolve_relative_dates,
    sentences,
)
from tokenwindow.counting import TokenCounter
from tokenwindow.errors import SummarizerError
from tokenwindow.messages import Message, text_of

SPEAKER = re.compile(r"^([A-Z][\w'.-]*(?: [A-Z][\w'.-]*){0,3}): ")
"""A ``Name: `` prefix, as transcripts of multi-party chats write it."""
STAMP = re.compile(r"^\[([^\]\n]{3,60})\]\s*")
"""A ``[1:56 pm on 8 May, 2023]`` timestamp opening a message or a summary line."""
FILLER = re.compile(
    r"\b(?:"
    + "|".join(sorted(STOP_WORDS - NEGATIONS, key=len, reverse=True))
    + r")(?:'\w+)?\b[ ,]*",
    re.IGNORECASE,
)
"""Stop words and their contractions: dropping them fits about twice the facts per token."""
PROPER = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+")
NUMBER = re.compile(r"\d")
EMPHASIS = 2.0
"""Extra weight for names and numbers: they are most often what a later question asks for."""
LINE_COST = 6
"""Tokens a sentence is charged beyond its own when ranked: short chit-chat ranks lower."""
MAX_SENTENCE_TOKENS = 60
"""Longer runs (code, logs, unpunctuated text) are split, so any budget can take a piece."""


@dataclass(frozen=True)
class Sentence:
    """One candidate for the summary, in chronological position."""

    order: int
    speaker: str | None
    header: str | None
    text: str
    words: frozenset[str]
    tokens: int


def _squeeze(text: str) -> str:
    squeezed = FILLER.sub("", text).strip(" ,")
    squeezed = re.sub(r"[\s,]+(?=[.,!?;:])", "", re.sub(r"\s{2,}", " ", squeezed))
    return squeezed or text


class ExtractiveSummarizer:
    """Greedy content-word coverage under a token budget; implements ``Summarizer``."""

    def __init__(self, counter: TokenCounter) -> None:
        self.counter = counter

    @staticmethod
    def _lines(messages: list[Message], previous: str | None) -> Iterator[tuple[str | None, str]]:
        """(default speaker, text) per message, and per line of any summary being folded."""
        for text in (previous,) if previous else ():
            yield from ((None, line) for line in text.splitlines())
        for message in messages:
            summary = parse_summary(message)
            if summary is None:
                yield message.get("name") or message["role"], text_of(message)
            else:
                yield from ((None, line) for line in summary.splitlines())

    def _pieces(self, sentence: str, limit: int) -> Iterator[tuple[str, int]]:
        """``sentence`` shortened, as (text, tokens); run-on text split into ``limit`` runs."""
        short = _squeeze(sentence)
        tokens = self.counter.count_text(short)
        if tokens <= limit:
            yield short, tokens
            return
        words = short.split()
        step = max(len(words) * limit // tokens, 1)
        for start in range(0, len(words), step):
            piece = " ".join(words[start : start + step])
            yield piece, self.counter.count_text(piece)

    def _sentences(
        self, messages: list[Message], previous: str | None, limit: int
    ) -> list[Sentence]:
        found: list[Sentence] = []
        header: str | None = None
        day = None
        for default, raw in self._lines(messages, previous):
            # Messages read "Name: [stamp] text", summary lines "[stamp] Name: text".
            text, speaker = raw.strip(), default
            for pattern in (STAMP, SPEAKER, STAMP):
                match = pattern.match(text)
                if match is None:
                    continue
                text = text[match.end() :]
                if pattern is SPEAKER:
                    speaker = match.group(1)
                else:
                    day = find_date(match.group(1))
                    header = format_date(day) if day else match.group(1)
            if day is not None:
                text = resolve_relative_dates(text, day)
            for sentence in sentences(text):
                for short, tokens in self._pieces(sentence, limit):
                    found.append(
                        Sentence(
                            order=len(found),
                            speaker=speaker,
                            header=header,
                            text=short,
                            words=frozenset(content_words(short)),
                            tokens=tokens + 1,
                        )
                    )
        return found

    @staticmethod
    def _weights(found: list[Sentence]) -> dict[str, float]:
        frequency = Counter(w for s in found for w in s.words)
        emphasized = {w.lower() for s in found for w in PROPER.findall(s.text)} | {
            w for s in found for w in s.words if NUMBER.search(w)
        }
        total = len(found) + 1
        return {
            w: math.log(total / n) + (EMPHASIS if w in emphasized else 0.0)
            for w, n in frequency.items()
        }

    def _select(self, found: list[Sentence], budget: int) -> list[Sentence]:
        """Lazy greedy: the best gain per token, re-scored only when it reaches the top.

        Gains are exact sums (``math.fsum``): a plain sum over a set depends on its iteration
        order, which changes with the process's hash seed, and would break ties differently.

        Returns the picks best first.
        """
        weights = self._weights(found)
        covered: set[str] = set()
        heap = [
            (-math.fsum(weights[w] for w in s.words) / (s.tokens + LINE_COST), s.order)
            for s in found
        ]
        heapq.heapify(heap)
        chosen: list[Sentence] = []
        while heap and budget > 0:
            _, order = heapq.heappop(heap)
            sentence = found[order]
            gain = math.fsum(weights[w] for w in sentence.words - covered) / (
                sentence.tokens + LINE_COST
            )
            if gain <= 0:
                continue
            if heap and gain < -heap[0][0]:
                heapq.heappush(heap, (-gain, order))
                continue
            if sentence.tokens <= budget:
                chosen.append(sentence)
                covered |= sentence.words
                budget -= sentence.tokens
        return chosen

    @staticmethod
    def _render(chosen: list[Sentence]) -> str:
        """A line per speaker per session date, in first-seen order; the date opens the first."""
        blocks: dict[str | None, dict[str | None, list[str]]] = {}
        for sentence in sorted(chosen, key=lambda s: s.order):
            block = blocks.setdefault(sentence.header, {})
            block.setdefault(sentence.speaker, []).append(sentence.text)
        lines: list[str] = []
        for header, speakers in blocks.items():
            stamp = f"[{header}] " if header is not None else ""
            for speaker, texts in speakers.items():
                label = f"{speaker}: " if speaker else ""
                lines.append(stamp + label + " ".join(texts))
                stamp = ""
        return "\n".join(lines)

    def __call__(
        self, messages: list[Message], *, previous_summary: str | None, max_tokens: int
    ) -> str:
        limit = max(min(MAX_SENTENCE_TOKENS, max_tokens // 2), 1)
        found = self._sentences(messages, previous_summary, limit)
        if not found:
            raise SummarizerError("nothing to summarize: the span has no text")
        chosen = self._select(found, max_tokens)
        text = self._render(chosen)
        if chosen and self.counter.count_text(text) <= max_tokens:
            return text
        # Labels and date lines cost more than the sentences alone: keep the most picks, in
        # the order they were chosen (most valuable first), whose rendering fits.
        best = None
        low, high = 1, len(chosen) - 1
        while low <= high:
            middle = (low + high) // 2
            text = self._render(chosen[:middle])
            if self.counter.count_text(text) <= max_tokens:
                best, low = text, middle + 1
            else:
                high = middle - 1
        if best is None:
            raise SummarizerError(f"no sentence fits in {max_tokens} tokens")
        return best
