"""Sending tasks by name: all a producer needs of Celery.

A producer never imports the worker's code or configuration; it only needs the broker URL, the
task names and their queues (``tokenwindow.constants``), and JSON.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from tokenwindow.broker import transport_for
from tokenwindow.constants import TASK_ROUTES
from tokenwindow.settings import Settings
from tokenwindow.topology import celery_broker, celery_queues, celery_result_backend

IDENTIFYING_FIELDS = ("session_id", "turn_id", "transcript_id", "model", "strategy")


def safe_repr(kwargs: dict[str, Any]) -> str:
    """What Flower and worker logs show of a task's arguments: identifiers, never messages."""
    return repr({key: kwargs[key] for key in IDENTIFYING_FIELDS if key in kwargs})


class TaskProducer:
    """A send-only Celery app with the same routes and serializer as the workers."""

    def __init__(
        self, broker_url: str, backend_url: str | None = None, *, settings: Settings | None = None
    ) -> None:
        """``backend_url`` (the workers' result backend) is for producers that read results.

        With ``settings``, the broker's transport options and queue declarations follow the
        topology (Sentinel master name, quorum queues with publisher confirms).
        """
        self.app = Celery(
            "tokenwindow-producer", broker=broker_url, backend=backend_url, set_as_current=False
        )
        self.app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            task_routes={name: {"queue": queue} for name, queue in TASK_ROUTES.items()},
            broker_connection_retry_on_startup=True,
            broker_transport=transport_for(broker_url),
        )
        if settings is not None:
            self.app.conf.update(
                broker_transport_options=celery_broker(settings).transport_options,
                result_backend_transport_options=celery_result_backend(settings).transport_options,
            )
        if settings is not None and settings.broker_quorum_queues:
            # RabbitMQ refuses a declaration that differs from the workers'. Only then: queues
            # made from the routes bind by their own name, while declared plain ones would take
            # this send-only app's default exchange and share one routing key.
            self.app.conf.task_queues = celery_queues(settings)

    @classmethod
    def for_settings(cls, settings: Settings, *, with_results: bool = False) -> TaskProducer:
        """A producer for the configured topology (``with_results``: it reads task results)."""
        backend = celery_result_backend(settings).url if with_results else None
        return cls(celery_broker(settings).url, backend, settings=settings)

    def send(self, name: str, kwargs: dict[str, Any], task_id: str | None = None) -> str:
        """Publish one task; returns its Celery task id (``task_id`` if given)."""
        result = self.app.send_task(
            name,
            kwargs=kwargs,
            queue=TASK_ROUTES[name],
            task_id=task_id,
            kwargsrepr=safe_repr(kwargs),
        )
        return str(result.id)

    def close(self) -> None:
        self.app.close()
