"""A Celery app with no tasks and no hooks: the floor any worker's start-up is measured against.

Same broker and serializer settings as the real app, nothing else.
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("bare", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
)
