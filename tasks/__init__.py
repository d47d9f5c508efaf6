"""Thin Celery tasks: validate, call a strategy or adapter, own retries and idempotency."""
