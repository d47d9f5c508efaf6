"""Fanning transcripts out to the workers by task name, with a bounded number in flight.

Results come back through the workers' Redis result backend: one MGET per poll over the tasks in
flight, and each result is deleted once its line is in the output. Task ids are derived from the
output file and the task's arguments, so a rerun after an interrupted run sends the same ids and
collects results that workers finished after the producer stopped.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from celery import states

from tokenwindow.bulk.jobs import error_record
from tokenwindow.constants import TASK_COMPRESS_TRANSCRIPT
from tokenwindow.errors import ConfigurationError
from tokenwindow.producer import TaskProducer
from tokenwindow.settings import Settings

POLL_SECONDS = 0.01
STATS_TIMEOUT_SECONDS = 1.0
IN_FLIGHT_PER_PROCESS = 4
"""Default in-flight tasks per worker process: enough queued that none idles between polls."""
TASK_ID_NAMESPACE = uuid.UUID("4f0c2a52-7d4e-4b8e-9a56-0f1d3c1f2b7e")


def task_id_for(salt: str, kwargs: dict[str, Any]) -> str:
    """The same id for the same output file and arguments, in every run."""
    return str(uuid.uuid5(TASK_ID_NAMESPACE, salt + json.dumps(kwargs, sort_keys=True)))


def _record(transcript_id: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The output line from a finished task's stored result."""
    result = meta.get("result")
    if meta.get("status") == states.SUCCESS and isinstance(result, dict):
        return result
    if meta.get("status") == states.REVOKED:
        return error_record(transcript_id, "revoked", "the task was revoked")
    reason = f"{type(result).__name__}: {result}" if result is not None else "no result"
    return error_record(transcript_id, "task_failed", reason)


class CeleryRunner:
    """Sends ``tokenwindow.compress_transcript`` and collects the results as they finish."""

    def __init__(
        self,
        broker_url: str,
        backend_url: str,
        *,
        salt: str,
        capacity: int | None = None,
        settings: Settings | None = None,
    ) -> None:
        """``settings`` carry the topology's transport options (Sentinel, quorum queues)."""
        self.producer = TaskProducer(broker_url, backend_url=backend_url, settings=settings)
        self.backend = self.producer.app.backend
        self.salt = salt
        self.capacity = capacity or IN_FLIGHT_PER_PROCESS * self._worker_processes()
        self._pending: dict[str, str] = {}
        """Task id -> transcript id, for the tasks in flight."""

    def _worker_processes(self) -> int:
        """Pool processes of the workers answering now; none is a usage error, not a hang.

        A broker that does not answer raises kombu's ``OperationalError``, which the command
        line turns into one line naming ``BROKER_URL``.
        """
        stats = self.producer.app.control.inspect(timeout=STATS_TIMEOUT_SECONDS).stats()
        if not stats:
            raise ConfigurationError(
                "no worker answered; start one (see the Procfile) or use --local"
            )
        return sum(int(s.get("pool", {}).get("max-concurrency", 1)) for s in stats.values())

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    def submit(self, kwargs: dict[str, Any]) -> None:
        task_id = task_id_for(self.salt, kwargs)
        self.producer.send(TASK_COMPRESS_TRANSCRIPT, kwargs, task_id=task_id)
        self._pending[task_id] = str(kwargs["transcript_id"])

    def drain(self, write: Callable[[dict[str, Any]], None]) -> None:
        """Hand each finished result to ``write``, then delete it from the backend."""
        finished = self.backend.get_many(
            set(self._pending), interval=POLL_SECONDS, max_iterations=1
        )
        for task_id, meta in finished:
            write(_record(self._pending.pop(task_id), meta))
            self.backend.forget(task_id)

    def close(self) -> None:
        self.producer.close()
