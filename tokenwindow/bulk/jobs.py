"""What one bulk job asks of each transcript, and the output line of a failure.

The task's keyword arguments are one transcript and a few scalars, so they stay small however
large the input is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenwindow.messages import Message

EXTRACTIVE = "extractive"
"""``--summarizer`` value for the offline summarizer (no network, no key)."""


@dataclass(frozen=True)
class JobSpec:
    """The compression every transcript of one run gets."""

    model: str
    strategy: str
    budget: int | None = None
    ratio: float | None = None
    summarizer: str = EXTRACTIVE

    def task_kwargs(self, transcript_id: str, messages: list[Message]) -> dict[str, Any]:
        """Keyword arguments of ``tokenwindow.compress_transcript`` for one transcript."""
        return {
            "transcript_id": transcript_id,
            "messages": messages,
            "model": self.model,
            "strategy": self.strategy,
            "budget": self.budget,
            "ratio": self.ratio,
            "summarizer": self.summarizer,
        }


def error_record(transcript_id: str, code: str, message: str) -> dict[str, Any]:
    """The output line of a transcript that could not be compressed."""
    return {"id": transcript_id, "error": {"code": code, "message": message}}
