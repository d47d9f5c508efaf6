"""The recovery sweep: a turn whose task the broker lost gets it sent again.

A broker can lose a task: a Redis failover promotes a replica that never received the message,
or the worker that took it dies before recording it. The turn is then live in the ledger and
no task will move it: a generating turn whose lease runs out and is never taken over, a parked
turn whose hand-on never arrived, and behind it every later turn of its session. Every worker
that serves the completions queue looks, every few seconds, at the sessions whose head turn is
due (``tokenwindow.constants.RECOVERY_KEY``, filled by each ingest) and sends a stalled head's
``ingest_turn`` again. The ledger makes that safe for a turn that is in fact alive: a live lease
keeps its holder, and the copy waits for it and then finds the turn done. Workers sweep
independently; each look is one atomic script, so two sweeps never resend one stall twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from kombu.exceptions import OperationalError

from tokenwindow.constants import RECOVERY_KEY
from tokenwindow.metrics import MetricsRecorder
from tokenwindow.scripts import Along
from tokenwindow.sessions import text_of_reply
from workers.ledger import Ledger, Outcome

log = logging.getLogger(__name__)

BATCH = 100
"""Sessions looked at per round trip of the due list; a sweep takes batches until none is due."""
STOP_WATCHING = frozenset(("idle", "given_up"))
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, OperationalError)
Send = Callable[[dict[str, Any]], None]
"""Sends ``ingest_turn`` with the given keyword arguments."""


class RecoverySweep:
    def __init__(
        self, client: redis.Redis, ledger: Ledger, metrics: MetricsRecorder, send: Send
    ) -> None:
        self.redis = client
        self.ledger = ledger
        self.metrics = metrics
        self.send = send

    def sweep(self) -> int:
        """Look at every session due now; return how many turns were sent again."""
        resent, now = 0, time.time()
        while due := self._due(now):
            resent += self._sweep(due, now)
        return resent

    def _due(self, now: float) -> list[str]:
        due: list[bytes | str] = self.redis.zrangebyscore(  # type: ignore[assignment]
            RECOVERY_KEY, "-inf", now, start=0, num=BATCH
        )
        return [text_of_reply(raw) for raw in due]

    def _sweep(self, due: list[str], now: float) -> int:
        """One batch in three round trips, however many sessions it holds: every first look;
        for the idle ones, the removal from the index and a second look (an ingest that ran
        between the two is seen by the second); then when to look at the rest again."""
        looks = dict(zip(due, self.ledger.recover(due), strict=True))
        idle = {sid: out for sid, out in looks.items() if isinstance(out, Outcome) and _stops(out)}
        for sid, stopped in idle.items():
            self._report_given_up(sid, stopped)
        second = self.ledger.recover(list(idle), before=_unwatch)
        looks.update((sid, out) for sid, out in zip(idle, second, strict=True) if not _stops(out))
        later: dict[str, float] = {}
        resend: list[tuple[str, Outcome]] = []
        for sid, out in looks.items():
            if isinstance(out, Exception):  # one broken session must not stop the others
                log.error(
                    "recovery sweep could not look at a session",
                    exc_info=out,
                    extra={"fields": {"session_id": sid}},
                )
                later[sid] = now + self.ledger.limits.recovery_grace_seconds
            elif not _stops(out):
                later[sid] = float(out.data["at"])
                if out.outcome == "resend":
                    resend.append((sid, out))
        if later:
            self.redis.zadd(RECOVERY_KEY, later)
        for sid, out in resend:
            self._resend(sid, out)
        return len(resend)

    def _resend(self, session_id: str, out: Outcome) -> None:
        self.send(_request(out))
        self.metrics.incr("turns_resent")
        log.warning(
            "sent a stalled turn's task again",
            extra={
                "fields": {
                    "session_id": session_id,
                    "turn_id": out.data["turn_id"],
                    "state": out.state,
                }
            },
        )

    @staticmethod
    def _report_given_up(session_id: str, out: Outcome) -> None:
        if out.outcome == "given_up":
            log.warning(
                "a stalled turn was sent again too often; the next arrival evicts it",
                extra={"fields": {"session_id": session_id, "turn_id": out.data["turn_id"]}},
            )


def _stops(out: Outcome | Exception) -> bool:
    """The look says to stop watching the session (not an error: that is looked at again)."""
    return isinstance(out, Outcome) and out.outcome in STOP_WATCHING


def _unwatch(session_id: str) -> Along:
    def commands(pipe: Any) -> None:
        pipe.zrem(RECOVERY_KEY, session_id)

    return commands


def _request(out: Outcome) -> dict[str, Any]:
    request: dict[str, Any] = json.loads(out.data["request"])
    return request


class SweepThread:
    """Runs a sweep every ``interval`` seconds beside the worker's consumer, until stopped."""

    def __init__(self, sweep: RecoverySweep, interval: float) -> None:
        self.sweep = sweep
        self.interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tw-recovery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self.interval)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.sweep.sweep()
            except UNREACHABLE as exc:  # Redis or the broker fails over: next round
                log.warning(
                    "recovery sweep skipped", extra={"fields": {"error": type(exc).__name__}}
                )
            except Exception:  # a bug must not end the sweep for the worker's lifetime
                log.exception("recovery sweep failed")
