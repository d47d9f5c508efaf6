"""The Celery application, and nothing else.

``celery -A workers.app worker`` loads this module: it builds the app from ``celeryconfig``
and registers the task modules. Lifecycle hooks (logging, Sentry, tokenizer warm-up) are
connected by ``workers.lifecycle`` so importing the app has no side effects beyond that.
"""

from __future__ import annotations

import sys

from celery import Celery

from tokenwindow.errors import ConfigurationError

TASK_MODULES = ("tasks.counting", "tasks.turns", "tasks.compression")


def create_app() -> Celery:
    try:
        import celeryconfig
    except ConfigurationError as exc:
        # One line naming the variable, then stop: a worker with bad settings must not start.
        print(f"tokenwindow: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    celery_app = Celery("tokenwindow")
    celery_app.config_from_object(celeryconfig)
    celery_app.conf.include = list(TASK_MODULES)
    return celery_app


app = create_app()

import workers.lifecycle  # noqa: E402,F401  (connects worker signals)
