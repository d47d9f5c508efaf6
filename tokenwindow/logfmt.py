"""The service's log format: one logfmt line per record, for machines and humans alike.

Workers (``workers.logs``) and the gateway both log through ``configure_logfmt``, so one parser
reads every process's output.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

QUIET_LOGGERS = ("LiteLLM", "litellm", "httpx", "httpcore")
"""Held at warning whatever the root level: litellm logs request bodies at debug level."""
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
"""The gateway server's loggers: they bring their own handlers, which would skip logfmt."""


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=... logger=... msg="..." key=value``; extra ``fields`` become keys."""

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


def configure_logfmt(level: int | str) -> None:
    """Every record of this process as one logfmt line on stderr, at ``level`` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in UVICORN_LOGGERS:
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
