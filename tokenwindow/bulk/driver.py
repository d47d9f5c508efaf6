"""The bulk loop: skip what the output already holds, keep the runner busy, write each result once.

A runner (in process, or the Celery workers) takes task keyword arguments and hands back output
records; the loop never submits more than ``runner.capacity`` at a time, so memory stays bounded
by the transcripts in flight however large the input is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from tokenwindow.bulk.jobs import JobSpec, error_record
from tokenwindow.bulk.output import ResultLog
from tokenwindow.bulk.progress import Progress
from tokenwindow.bulk.tally import Tally
from tokenwindow.transcripts import BadTranscript, Item


class Runner(Protocol):
    """Where transcripts are compressed."""

    capacity: int

    @property
    def outstanding(self) -> int:
        """Submitted transcripts whose results have not been handed back yet."""

    def submit(self, kwargs: dict[str, Any]) -> None:
        """Start compressing one transcript (``tokenwindow.compress_transcript`` arguments)."""

    def drain(self, write: Callable[[dict[str, Any]], None]) -> None:
        """Hand finished results to ``write``; may wait briefly for one."""

    def close(self) -> None: ...


class BulkRun:
    """One pass over the inputs into one output file."""

    def __init__(
        self, spec: JobSpec, runner: Runner, log: ResultLog, tally: Tally, progress: Progress
    ) -> None:
        self.spec = spec
        self.runner = runner
        self.log = log
        self.tally = tally
        self.progress = progress
        self._submitted: set[str] = set()

    def write(self, record: dict[str, Any]) -> None:
        """Append a result, once per id; a failure is also reported on its own line."""
        if not self.log.append(record):
            return
        self.tally.add_new(record)
        if "error" in record:
            error = record["error"]
            self.progress.note(
                f"tokenwindow compress: {record['id']}: {error['code']}: {error['message']}"
            )
        self.progress.tick()

    def _wait_for_room(self, room: int) -> None:
        while self.runner.outstanding > room:
            self.runner.drain(self.write)
            self.progress.tick()

    def run(self, items: Iterable[Item]) -> None:
        for item in items:
            if item.id in self._submitted:
                self.tally.duplicates += 1
                self.progress.note(f"tokenwindow compress: {item.id}: duplicate id; skipped")
                continue
            if item.id in self.log:
                continue
            self._submitted.add(item.id)
            if isinstance(item, BadTranscript):
                self.write(error_record(item.id, "invalid_input", item.reason))
                continue
            self._wait_for_room(self.runner.capacity - 1)
            self.runner.submit(self.spec.task_kwargs(item.id, item.messages))
        self._wait_for_room(0)
        self.progress.finish()
