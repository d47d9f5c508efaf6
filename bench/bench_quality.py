"""Compression quality on LoCoMo: how much of the answers' wording survives compression.

For each QA item of categories 1-4, answer recall is the share of the answer's content words
found anywhere in the context's text, averaged per conversation and reported as a fraction of
the uncompressed conversation's figure. Budgets are shares of each conversation's tokens
(o200k_base). Every strategy runs offline (extractive summarizer) beside the sliding window and
``litellm.trim_messages`` on the same inputs. The summarizer never sees the questions.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from statistics import mean
from typing import Any

from bench.report import Row
from strategies import STRATEGIES, compress
from strategies.base import CompressionRequest
from strategies.text import content_words
from tokenwindow.counting import counter_for_encoding
from tokenwindow.messages import Message, text_of
from tokenwindow.offline import prepare_offline_environment
from tokenwindow.transcripts import Transcript, read_path

BUDGETS = (0.10, 0.25, 0.50)
CATEGORIES = frozenset((1, 2, 3, 4))
BASELINE = "sliding_window"
MODEL = "gpt-4o"

Compressor = Callable[[list[Message], int], list[Message]]


def answer_recall(messages: list[Message], qa: list[dict[str, Any]]) -> float:
    """Mean share of each answer's content words present in the context."""
    present = set(content_words("\n".join(text_of(m) for m in messages)))
    scores = []
    for item in qa:
        wanted = set(content_words(str(item.get("answer", ""))))
        if item.get("category") in CATEGORIES and wanted:
            scores.append(len(wanted & present) / len(wanted))
    return mean(scores) if scores else 0.0


def _ours(name: str) -> Compressor:
    counter = counter_for_encoding("o200k_base")

    def run(messages: list[Message], budget: int) -> list[Message]:
        return compress(messages, name, CompressionRequest(budget=budget, counter=counter)).messages

    return run


def _trim_messages(messages: list[Message], budget: int) -> list[Message]:
    from litellm.utils import trim_messages

    trimmed: list[Message] = trim_messages(messages, model=MODEL, max_tokens=budget, trim_ratio=1.0)
    return trimmed


def _conversations(folder: Path) -> list[tuple[Transcript, list[dict[str, Any]]]]:
    found = []
    for item in read_path(folder):
        if not isinstance(item, Transcript):
            continue
        source = folder / f"{item.id}.json"
        with source.open(encoding="utf-8") as f:
            found.append((item, json.load(f).get("qa", [])))
    return found


def run(args: argparse.Namespace) -> list[Row]:
    """One row per strategy and budget, each against the sliding window on the same inputs."""
    prepare_offline_environment()
    counter = counter_for_encoding("o200k_base")
    compressors: dict[str, Compressor] = {name: _ours(name) for name in STRATEGIES}
    compressors["litellm.trim_messages"] = _trim_messages
    ratios: dict[tuple[str, float], list[float]] = {}
    for transcript, qa in _conversations(Path(args.data)):
        full = answer_recall(transcript.messages, qa)
        tokens = counter.count_messages(transcript.messages)
        for share in BUDGETS:
            for name, compressor in compressors.items():
                kept = compressor(transcript.messages, int(tokens * share))
                ratios.setdefault((name, share), []).append(answer_recall(kept, qa) / full)
    rows = []
    for (name, share), values in ratios.items():
        ours, baseline = mean(values), mean(ratios[(BASELINE, share)])
        rows.append(
            Row(
                bench="quality",
                case=f"{name} @ {share:.0%}",
                ours=f"{ours:.3f}",
                baseline=f"{baseline:.3f}",
                ratio=f"{ours / baseline:.2f}x",
                note=f"answer recall vs uncompressed; min {min(values):.3f} over {len(values)}",
            )
        )
    return rows
