"""Sentry, initialised in the worker only when ``SENTRY_DSN`` is set, with prompts scrubbed."""

from __future__ import annotations

import importlib
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


OWN_MODULES = ("tokenwindow", "strategies", "workers", "tasks")
"""Our exceptions never carry prompt text (provider messages that quote it are withheld)."""


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Strip message contents; keep the shape of the event (type, frames, ids)."""
    for section in ("extra", "contexts", "request"):
        if section in event:
            event[section] = scrub(event[section])
    for exception in (event.get("exception") or {}).get("values", []):
        if not str(exception.get("module") or "").startswith(OWN_MODULES):
            # A library's exception text may quote the request (providers echo prompts).
            exception["value"] = REDACTED
        for frame in (exception.get("stacktrace") or {}).get("frames", []):
            frame.pop("vars", None)
    if "breadcrumbs" in event:
        event["breadcrumbs"] = scrub(event["breadcrumbs"])
    return event


LLM_INTEGRATIONS = (
    ("openai", "OpenAIIntegration"),
    ("anthropic", "AnthropicIntegration"),
    ("litellm", "LiteLLMIntegration"),
)
"""Sentry integrations that switch themselves on and record prompts and raw provider errors."""


def llm_integrations() -> list[type[Any]]:
    """The LLM integrations this sentry-sdk has, to disable (importing one may refuse)."""
    from sentry_sdk.integrations import DidNotEnable

    found = []
    for module, name in LLM_INTEGRATIONS:
        try:
            found.append(
                getattr(importlib.import_module(f"sentry_sdk.integrations.{module}"), name)
            )
        except (ImportError, DidNotEnable):
            continue
    return found


def init_sentry(settings: Settings) -> bool:
    """Start Sentry if configured; returns whether it was started."""
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        integrations=[CeleryIntegration()],
        disabled_integrations=[] if settings.log_prompts else llm_integrations(),
        # send_default_pii stays at its default (off); newer SDKs deprecate passing it at all.
        include_local_variables=settings.log_prompts,
        before_send=None if settings.log_prompts else before_send,  # type: ignore[arg-type]
    )
    return True
