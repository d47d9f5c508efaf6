"""Token counting as a task on the fast queue, for producers without the tokenizer files."""

from __future__ import annotations

from typing import Any

from tokenwindow.constants import TASK_COUNT_TOKENS
from tokenwindow.counting import count_request
from tokenwindow.errors import TokenWindowError
from workers.app import app


class CountError(Exception):
    """Raised so the task's result is FAILURE with the error's code and message."""


@app.task(name=TASK_COUNT_TOKENS, ignore_result=False)
def count_tokens(
    *,
    model: str,
    text: str | None = None,
    messages: list[dict[str, Any]] | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Same answer as ``tokenwindow count`` and ``client.count_tokens``: one code path."""
    try:
        return count_request(model, text=text, messages=messages, tools=tools)
    except TokenWindowError as exc:
        raise CountError(f"{exc.code}: {exc.message}") from None
