"""The run's figures, counted from the very lines in the output file so the two always agree."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tally:
    """Counts over the whole output file, and what this run added to it."""

    done: int = 0
    failed: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    resumed: int = 0
    """Lines already in the output when the run started (their ids were skipped)."""
    duplicates: int = 0
    """Input transcripts skipped because an earlier one in this run had the same id."""
    processed: int = 0
    processed_tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, record: dict[str, Any]) -> None:
        """Count one output line."""
        if "error" in record:
            self.failed += 1
            return
        self.done += 1
        self.tokens_before += int(record["tokens_before"])
        self.tokens_after += int(record["tokens_after"])

    def add_new(self, record: dict[str, Any]) -> None:
        """Count one line written by this run."""
        self.add(record)
        self.processed += 1
        self.processed_tokens += int(record.get("tokens_before", 0))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def rate(self, amount: int) -> float:
        """Per second of this run."""
        return amount / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """The figures as JSON (``--report``)."""
        saved = 1 - self.tokens_after / self.tokens_before if self.tokens_before else 0.0
        return {
            "transcripts": self.done + self.failed,
            "done": self.done,
            "failed": self.failed,
            "tokens_before": self.tokens_before,
            "tokens_after": self.tokens_after,
            "saved_share": round(saved, 4),
            "resumed": self.resumed,
            "duplicates": self.duplicates,
            "processed": self.processed,
            "elapsed_seconds": round(self.elapsed, 3),
            "transcripts_per_second": round(self.rate(self.processed), 3),
            "tokens_per_second": round(self.rate(self.processed_tokens), 1),
        }

    def text(self) -> str:
        """The figures for a person, a few lines."""
        s = self.summary()
        return (
            f"{s['transcripts']} transcripts in the output: {s['done']} done, "
            f"{s['failed']} failed ({s['resumed']} from earlier runs, "
            f"{s['duplicates']} duplicate ids skipped)\n"
            f"tokens: {s['tokens_before']:,} -> {s['tokens_after']:,} "
            f"({s['saved_share']:.1%} saved)\n"
            f"this run: {s['processed']} transcripts in {s['elapsed_seconds']:.1f} s, "
            f"{s['transcripts_per_second']:.1f} transcripts/s, "
            f"{s['tokens_per_second']:,.0f} tokens/s"
        )
