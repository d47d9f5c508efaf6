"""Sentry events never carry conversation text, and Sentry stays off without a DSN."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from celery import Celery
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from tokenwindow.settings import load_settings
from workers import sentry
from workers.logs import REDACTED

SECRET = "my-social-security-number-is-078-05-1120"
"""Distinctive prompt text; any appearance in an event is a leak."""


def celery_event() -> dict[str, Any]:
    """Shaped like what the Celery integration sends for a failed task, prompt text included."""
    messages = [{"role": "user", "content": SECRET}]
    return {
        "level": "error",
        "exception": {
            "values": [
                {
                    "type": "ProviderError",
                    "module": "tokenwindow.errors",
                    "value": "provider returned 500",
                    "stacktrace": {
                        "frames": [
                            {
                                "function": "complete_turn",
                                "module": "tasks.turns",
                                "vars": {"messages": repr(messages), "prompt": SECRET},
                            },
                            {
                                "function": "stream_reply",
                                "module": "workers.llm",
                                "vars": {"chunk": f"...{SECRET}..."},
                            },
                        ]
                    },
                }
            ]
        },
        "extra": {
            "celery-job": {
                "task_name": "tokenwindow.complete_turn",
                "args": [],
                "kwargs": {"session_id": "s-1", "turn_id": "t-1", "messages": messages},
            },
            "sys.argv": ["celery", "-A", "workers.app", "worker"],
        },
        "contexts": {
            "turn": {"session_id": "s-1", "text": SECRET},
            "runtime": {"name": "CPython", "version": "3.11"},
        },
        "breadcrumbs": {
            "values": [
                {
                    "category": "tokenwindow.llm",
                    "message": "calling provider",
                    "data": {"model": "gpt-4o", "body": {"messages": messages}},
                }
            ]
        },
        "request": {"url": "http://gateway/v1/chat", "data": {"messages": messages}},
        "tags": {"celery_task_id": "abc"},
    }


def test_before_send_removes_prompt_text_everywhere() -> None:
    event = celery_event()
    scrubbed = sentry.before_send(copy.deepcopy(event), {})
    assert SECRET in json.dumps(event)
    assert SECRET not in json.dumps(scrubbed)


def test_before_send_keeps_what_is_needed_to_debug() -> None:
    scrubbed = sentry.before_send(celery_event(), {})
    job = scrubbed["extra"]["celery-job"]
    assert job["task_name"] == "tokenwindow.complete_turn"
    assert job["kwargs"] == REDACTED
    assert scrubbed["contexts"]["turn"]["session_id"] == "s-1"
    assert scrubbed["contexts"]["runtime"]["version"] == "3.11"
    frames = scrubbed["exception"]["values"][0]["stacktrace"]["frames"]
    assert [f["function"] for f in frames] == ["complete_turn", "stream_reply"]
    assert all("vars" not in frame for frame in frames)
    assert scrubbed["exception"]["values"][0]["value"] == "provider returned 500"
    assert scrubbed["breadcrumbs"]["values"][0]["data"]["model"] == "gpt-4o"
    assert scrubbed["tags"] == {"celery_task_id": "abc"}


def test_no_dsn_means_no_sentry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(sentry_sdk, "init", lambda **options: started.append(options))
    assert sentry.init_sentry(load_settings(_env_file=None)) is False
    assert started == []


class CapturingTransport(Transport):
    """Keeps every envelope in memory instead of sending it."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        return [
            item.payload.json
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == "event" and item.payload.json is not None
        ]


@pytest.fixture
def transport(monkeypatch: pytest.MonkeyPatch) -> Iterator[CapturingTransport]:
    """Real ``sentry_sdk.init`` through ``init_sentry``, with events kept in memory."""
    captured = CapturingTransport()
    real_init = sentry_sdk.init

    def init(**options: Any) -> Any:
        return real_init(transport=captured, **options)

    monkeypatch.setattr(sentry_sdk, "init", init)
    monkeypatch.setenv("SENTRY_DSN", "https://public@sentry.invalid/1")
    assert sentry.init_sentry(load_settings(_env_file=None)) is True
    yield captured
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def test_failed_task_event_carries_no_prompt_text(transport: CapturingTransport) -> None:
    app = Celery("sentry-test", set_as_current=False)
    app.conf.task_always_eager = True

    @app.task(name="tokenwindow.complete_turn")  # type: ignore[untyped-decorator]
    def complete_turn(session_id: str, messages: list[dict[str, Any]]) -> None:
        reply_so_far = f"echo: {messages[-1]['content']}"  # a local holding prompt text
        raise RuntimeError(f"provider failed after {len(reply_so_far)} characters")

    result = complete_turn.apply(
        kwargs={"session_id": "s-1", "messages": [{"role": "user", "content": SECRET}]}
    )
    assert result.failed()
    sentry_sdk.flush(timeout=5)

    events = transport.events()
    assert events, "the task failure was not captured"
    assert any(
        event.get("extra", {}).get("celery-job", {}).get("task_name") == "tokenwindow.complete_turn"
        for event in events
    )
    assert SECRET not in json.dumps(events)


def test_before_send_redacts_library_exception_text() -> None:
    """A provider SDK's exception may quote the request; only our own keep their text."""
    event = celery_event()
    event["exception"]["values"][0].update(
        module="openai", type="InternalServerError", value=f"bad request: {SECRET}"
    )
    scrubbed = sentry.before_send(event, {})
    assert scrubbed["exception"]["values"][0]["value"] == REDACTED
    assert scrubbed["exception"]["values"][0]["type"] == "InternalServerError"
