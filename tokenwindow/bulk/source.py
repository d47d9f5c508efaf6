"""The transcripts of every input, in order, streamed, with how much of the input has been read.

Files are opened here rather than through ``read_path`` so the byte offset of the current file
is known: that is what the progress bar and ETA are computed from.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from tokenwindow.errors import InvalidInputError
from tokenwindow.transcripts import SUFFIXES, BadTranscript, Item, read_stream

STDIN = "-"


def input_files(source: str) -> list[Path]:
    """The files behind one input argument; ``InvalidInputError`` when it cannot be read."""
    path = Path(source)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    if not path.is_file():
        raise InvalidInputError(f"{source}: no such file or folder")
    if not os.access(path, os.R_OK):
        raise InvalidInputError(f"{source}: not readable")
    return [path]


def _nothing_open() -> int:
    return 0


class Source:
    """All inputs as one stream of transcripts; ``-`` is JSONL on stdin."""

    def __init__(self, inputs: Sequence[str]) -> None:
        if inputs.count(STDIN) > 1:
            raise InvalidInputError("input: '-' (stdin) may be given once")
        self._plan = [
            (name, [] if name == STDIN else [(f, f.stat().st_size) for f in input_files(name)])
            for name in inputs
        ]
        self.total_bytes = sum(size for _, files in self._plan for _, size in files)
        self._read_bytes = 0
        self._position: Callable[[], int] = _nothing_open
        self.has_stdin = STDIN in inputs

    def fraction(self) -> float | None:
        """Share of the input bytes read so far; ``None`` when stdin makes the total unknown."""
        if self.has_stdin or not self.total_bytes:
            return None
        return min(1.0, (self._read_bytes + self._position()) / self.total_bytes)

    def __iter__(self) -> Iterator[Item]:
        for name, files in self._plan:
            if name == STDIN:
                yield from read_stream(sys.stdin, "<stdin>")
            for file, size in files:
                yield from self._read_file(file)
                self._read_bytes += size

    def _read_file(self, file: Path) -> Iterator[Item]:
        try:
            with file.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8") as stream:
                self._position = raw.tell
                yield from read_stream(stream, str(file))
        except (OSError, UnicodeDecodeError) as exc:
            yield BadTranscript(str(file), f"cannot read: {exc}")
        finally:
            self._position = _nothing_open
