"""Celery's consumer: task events for Flower in batches on a clock, and each received task
handed to the pool from inside the process's step slot.

Celery buffers task events (received, started, succeeded) and asks its event loop to flush the
buffer after every one of them, so each event became its own ``PUBLISH`` round trip on the
consumer's thread: at 500 streaming turns that was about 0.6 ms of the worker's CPU per turn,
under the interpreter lock the streams share. Here the buffer goes out at most once every
``EVENT_FLUSH_SECONDS``, as one message carrying every event of that interval (Celery's own
``task.multi`` batch, which Flower reads). An event waits at most that long; Celery still
flushes a buffer that reaches its size limit at once.

Handing a received task to the pool (Celery's request, its ``task-received`` event, the pool's
queue) is about a millisecond of Python on the consumer's thread. In a worker with a stream loop
it runs in the step slot (``workers.steps``), like each turn's own steps, so the loop never has
more than one of them to share the interpreter's lock with.
"""

from __future__ import annotations

import time
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.common import ignore_errors

from workers.steps import STEPS

EVENT_FLUSH_SECONDS = 0.1
"""How often buffered task events are published: a tenth of a second is below what a monitor
shows, and at hundreds of tasks a second it turns dozens of publishes into one."""


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """``worker_consumer`` in ``celeryconfig``: Celery's consumer with clocked event flushes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._events_flushed_at = 0.0
        self._events_flush_due = False
        """A flush is scheduled on the event loop: events buffered meanwhile wait for it."""

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Any:
        handler = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            with STEPS.held():
                return handler(message)

        return on_task_received

    def on_send_event_buffered(self) -> None:
        """Called by any thread after buffering an event: wake the loop only when no flush is
        scheduled (the flag is cleared before that flush takes the buffer)."""
        if not self._events_flush_due:
            super().on_send_event_buffered()

    def _flush_events(self) -> None:
        """Runs on the consumer's event loop: flush now, or once the interval is over."""
        wait = self._events_flushed_at + EVENT_FLUSH_SECONDS - time.monotonic()
        if wait > 0 and self.hub is not None:
            if not self._events_flush_due:
                self._events_flush_due = True
                self.hub.call_later(wait, self._flush_events_due)
            return
        self._events_flushed_at = time.monotonic()
        super()._flush_events()

    def _flush_events_due(self) -> None:
        self._events_flush_due = False
        self._flush_events()

    def shutdown(self) -> None:
        """Events still waiting for the clock go out before the dispatcher closes."""
        self._events_flush_due = False
        if self.event_dispatcher:
            ignore_errors(self, self.event_dispatcher.flush)  # type: ignore[no-untyped-call]
        super().shutdown()
