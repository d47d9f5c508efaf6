"""Sentry, initialised in the worker only when ``SENTRY_DSN`` is set, with prompts scrubbed."""

from __future__ import annotations

from typing import Any

from tokenwindow.settings import Settings
from workers.logs import REDACTED

SCRUBBED_KEYS = frozenset(
    ("args", "kwargs", "messages", "content", "prompt", "text", "reply", "summary", "body")
)


def scrub(value: Any) -> Any:
    """Replace anything that could hold conversation text, at any depth."""
    if isinstance(value, dict):
        return {k: REDACTED if k in SCRUBBED_KEYS else scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    for section in ("extra", "contexts", "request"):
        if section in event:
            event[section] = scrub(event[section])
    for exception in (event.get("exception") or {}).get("values", []):
        for frame in (exception.get("stacktrace") or {}).get("frames", []):
            frame.pop("vars", None)
    if "breadcrumbs" in event:
        event["breadcrumbs"] = scrub(event["breadcrumbs"])
    return event


def init_sentry(settings: Settings) -> bool:
    """Start Sentry if configured; returns whether it was started."""
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        integrations=[CeleryIntegration()],
        # send_default_pii stays at its default (off); newer SDKs deprecate passing it at all.
        include_local_variables=settings.log_prompts,
        before_send=None if settings.log_prompts else before_send,  # type: ignore[arg-type]
    )
    return True
