"""Rows and the table every benchmark prints."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One measurement beside its baseline, measured in the same run."""

    bench: str
    case: str
    ours: str
    baseline: str
    ratio: str
    note: str = ""


HEADERS = ("bench", "case", "ours", "baseline", "ratio", "note")


def render(rows: Iterable[Row]) -> str:
    """A Markdown table, so the output pastes into the README as is."""
    cells = [HEADERS] + [(r.bench, r.case, r.ours, r.baseline, r.ratio, r.note) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADERS))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)
