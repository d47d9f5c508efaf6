"""Worker side: the Celery app, lifecycle, session state, streaming, metrics, provider calls."""
