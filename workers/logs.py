"""Structured logging: one logfmt line per task event, never with prompt text by default."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

REDACTED = "[redacted]"
SAFE_KWARGS = ("session_id", "turn_id", "model", "strategy", "transcript_id")
"""Task arguments that may appear in logs: identifiers, never message text."""


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=... logger=... msg="..." key=value`` for machines and humans alike."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "fields", {}))
        line = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


CELERY_CONSUMER_LOGGER = "celery.worker.consumer.consumer"
CELERY_TRACE_LOGGER = "celery.app.trace"


class MessageBodyFilter(logging.Filter):
    """Keep message bodies and task results out of Celery's own log lines.

    Celery logs the full body and headers of a message it rejects (unknown task, bad content
    type, undecodable) and a task's return value on success; for us those hold conversation
    text. The first line, which says what went wrong, is kept. Installed on the loggers
    themselves, so Sentry's logging hook sees the redacted record too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == CELERY_CONSUMER_LOGGER:
            text = record.getMessage()
            first = text.split("\n", 1)[0].split(" [type:", 1)[0]
            if first != text:
                record.msg = f"{first} (message body {REDACTED})"
                record.args = None
        elif isinstance(record.args, dict) and "return_value" in record.args:
            record.args = {**record.args, "return_value": REDACTED}
        return True


_BODY_FILTER = MessageBodyFilter()


def configure_logging(level: str, *, log_prompts: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    for name in (CELERY_CONSUMER_LOGGER, CELERY_TRACE_LOGGER):
        if log_prompts:
            logging.getLogger(name).removeFilter(_BODY_FILTER)
        else:
            logging.getLogger(name).addFilter(_BODY_FILTER)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # litellm logs request bodies at debug level; keep it at warning whatever the root says.
    for noisy in ("LiteLLM", "litellm", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def safe_fields(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The identifying task arguments, for a log line; everything else stays out."""
    return {k: kwargs[k] for k in SAFE_KWARGS if kwargs and k in kwargs}
