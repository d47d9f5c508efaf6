"""Progress on stderr: a redrawn bar with throughput and ETA on a terminal, plain lines otherwise.

The share done is the share of input bytes read, the one measure known up front for a stream of
unknown length; stdin has none, so it shows counts and rates only.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

from tokenwindow.bulk.tally import Tally

TERMINAL_REDRAW_SECONDS = 0.2
PLAIN_LINE_SECONDS = 5.0
BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _quantity(value: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.1f}"


class Progress:
    """Reports a running ``Tally``; ``fraction`` says how much of the input has been read."""

    def __init__(
        self,
        tally: Tally,
        fraction: Callable[[], float | None],
        stream: TextIO | None = None,
    ) -> None:
        self.tally = tally
        self.fraction = fraction
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self._every = TERMINAL_REDRAW_SECONDS if self.terminal else PLAIN_LINE_SECONDS
        self._shown_at = time.monotonic()
        self._drawn = False

    def status(self) -> str:
        t = self.tally
        text = (
            f"{t.processed} done ({t.failed} failed), "
            f"{_quantity(t.rate(t.processed))} transcripts/s, "
            f"{_quantity(t.rate(t.processed_tokens))} tokens/s"
        )
        share = self.fraction()
        if share is None:
            return text
        eta = t.elapsed * (1 - share) / share if share > 0 else None
        return f"{share:4.0%} {text}, ETA {_duration(eta) if eta is not None else '?'}"

    def _bar(self, line: str) -> str:
        """The line behind a bar, cut to the terminal's width so it redraws in place."""
        share = self.fraction()
        if share is not None:
            filled = int(BAR_WIDTH * share)
            line = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {line}"
        return line[: shutil.get_terminal_size().columns - 1]

    def tick(self, *, force: bool = False) -> None:
        """Show progress if it is time to."""
        now = time.monotonic()
        if not force and now - self._shown_at < self._every:
            return
        self._shown_at = now
        if self.terminal:
            self.stream.write("\r\x1b[K" + self._bar(self.status()))
            self._drawn = True
        else:
            self.stream.write(f"tokenwindow compress: {self.status()}\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own (a failed transcript), kept clear of the bar."""
        self.stream.write(("\r\x1b[K" if self._drawn else "") + text + "\n")
        self._drawn = False
        self.stream.flush()

    def finish(self) -> None:
        """Leave the last state on screen and move below it."""
        if self.terminal:
            self.tick(force=True)
            self.stream.write("\n")
            self.stream.flush()
