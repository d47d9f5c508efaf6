"""The output file: one JSON line per transcript, appended durably, resumable after any stop.

At open the existing lines are read back, so a rerun skips the ids already written. A torn last
line (the process was killed mid-write) is cut off; a damaged line anywhere else stops the run
rather than risk writing an id twice. Every line is flushed as it is written, so a killed run
loses nothing the kernel has seen, and the file is fsynced every ``SYNC_EVERY_SECONDS`` and at
close. An exclusive lock keeps a second run off the same file.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from tokenwindow.errors import InvalidInputError

SYNC_EVERY_SECONDS = 1.0


class ResultLog:
    """Append-only JSONL of results, keyed by transcript id."""

    def __init__(self, path: Path, on_existing: Callable[[dict[str, Any]], None]) -> None:
        """Open (or create) ``path``, replaying each line already there to ``on_existing``."""
        self.path = path
        self.ids: set[str] = set()
        try:
            self._file: BinaryIO = path.open("a+b")
        except OSError as exc:
            raise InvalidInputError(f"{path}: cannot open for writing: {exc}") from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise InvalidInputError(f"{path}: another run is writing to it") from None
        for record in self._recover():
            self.ids.add(str(record["id"]))
            on_existing(record)
        self.resumed = len(self.ids)
        self._synced_at = time.monotonic()

    def _recover(self) -> Iterator[dict[str, Any]]:
        """Existing records; truncates a torn last line."""
        self._file.seek(0)
        good_end = 0
        for number, line in enumerate(self._file, 1):
            try:
                record = json.loads(line) if line.endswith(b"\n") else None
            except ValueError:
                record = None
            if not isinstance(record, dict) or "id" not in record:
                if self._file.read(1):
                    raise InvalidInputError(f"{self.path}:{number}: damaged line; not resuming")
                break
            good_end += len(line)
            yield record
        self._file.truncate(good_end)
        self._file.seek(good_end)

    def __contains__(self, transcript_id: str) -> bool:
        return transcript_id in self.ids

    def append(self, record: dict[str, Any]) -> bool:
        """Write ``record`` unless its id is already in the file; True when written."""
        transcript_id = str(record["id"])
        if transcript_id in self.ids:
            return False
        self._file.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
        self._file.flush()
        self.ids.add(transcript_id)
        if time.monotonic() - self._synced_at >= SYNC_EVERY_SECONDS:
            self.sync()
        return True

    def sync(self) -> None:
        os.fsync(self._file.fileno())
        self._synced_at = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()
