"""Task log lines carry identifiers and timings, never conversation text."""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from celery import Celery, signals

from tests.conftest import TEST_REDIS_URL
from tests.harness import WorkerProcess
from tokenwindow.constants import QUEUE_FAST, TASK_COUNT_TOKENS
from tokenwindow.logfmt import LogfmtFormatter
from tokenwindow.settings import get_settings
from workers import lifecycle
from workers.logs import (
    CELERY_CONSUMER_LOGGER,
    CELERY_TRACE_LOGGER,
    REDACTED,
    MessageBodyFilter,
    configure_logging,
)

SECRET = "the-launch-code-is-7734-zebra"
"""Distinctive prompt text that must not reach any log line."""


@pytest.fixture
def task_log() -> Iterator[io.StringIO]:
    """What the ``tokenwindow.tasks`` logger writes, through the production formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    logger = logging.getLogger("tokenwindow.tasks")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(previous)


def parse(line: str) -> dict[str, str]:
    """Just enough logfmt for these lines: values here are unquoted or simple quoted text."""
    fields: dict[str, str] = {}
    rest = line
    while rest:
        key, _, rest = rest.partition("=")
        if rest.startswith('"'):
            value, _, rest = rest[1:].partition('" ')
            value = value.rstrip('"')
        else:
            value, _, rest = rest.partition(" ")
        fields[key.strip()] = value
    return fields


def test_task_lines_have_ids_and_seconds_but_no_text(task_log: io.StringIO) -> None:
    task = SimpleNamespace(name="tokenwindow.ingest_turn")
    task_id = str(uuid.uuid4())
    kwargs = {
        "session_id": "user_123_session_456",
        "turn_id": "t-1",
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": SECRET}],
    }
    lifecycle._task_started(task_id=task_id, task=task, kwargs=kwargs)
    lifecycle._task_finished(task_id=task_id, task=task, state="SUCCESS", kwargs=kwargs)
    lifecycle._task_retry(
        request=SimpleNamespace(task=task.name, id=task_id, kwargs=kwargs),
        reason=TimeoutError(SECRET),
    )

    output = task_log.getvalue()
    assert SECRET not in output
    started, finished, retry = (parse(line) for line in output.splitlines())
    assert started["msg"] == "task started"
    assert finished["msg"] == "task finished"
    for fields in (started, finished, retry):
        assert fields["task_id"] == task_id
        assert fields["session_id"] == "user_123_session_456"
        assert fields["turn_id"] == "t-1"
    assert float(finished["seconds"]) >= 0
    assert finished["state"] == "SUCCESS"
    assert retry["reason"] == "TimeoutError"


def test_formatter_quotes_values_with_spaces_and_newlines() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, 'a "b"\nc', None, None)
    record.fields = {"k": "two words", "n": 3}
    line = LogfmtFormatter().format(record)
    assert "\n" not in line
    assert 'msg="a \\"b\\"\\nc"' in line
    assert 'k="two words"' in line
    assert "n=3" in line
    assert line.startswith("ts=") and "level=info" in line


def consumer_record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(
        CELERY_CONSUMER_LOGGER, logging.ERROR, __file__, 1, message, args, None
    )


def test_celery_message_dumps_are_cut_to_their_first_line() -> None:
    unknown = consumer_record(
        "Received unregistered task of type %s.\nThe full contents of the message body was:\n%s",
        "'tokenwindow.gone'",
        f"[[], {{'messages': [{{'content': '{SECRET}'}}]}}]",
    )
    undecodable = consumer_record(
        "Can't decode message body: %r [type:%r encoding:%r headers:%s]\n\nbody: %s",
        ValueError("bad"),
        "application/json",
        "utf-8",
        f"{{'kwargsrepr': '{SECRET}'}}",
        SECRET,
    )
    for record in (unknown, undecodable):
        assert MessageBodyFilter().filter(record)
        assert SECRET not in record.getMessage()
        assert REDACTED in record.getMessage()
    assert unknown.getMessage().startswith("Received unregistered task of type 'tokenwindow.gone'.")


def test_task_return_values_are_redacted() -> None:
    context = {"name": "t", "id": "1", "runtime": 0.1, "return_value": SECRET}
    record = logging.LogRecord(
        CELERY_TRACE_LOGGER,
        logging.INFO,
        __file__,
        1,
        "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
        (context,),
        None,
    )
    MessageBodyFilter().filter(record)
    assert record.getMessage() == f"Task t[1] succeeded in 0.1s: {REDACTED}"


def test_log_prompts_opt_in_removes_the_filter() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("INFO")
        assert logging.getLogger(CELERY_CONSUMER_LOGGER).filters
        configure_logging("INFO", log_prompts=True)
        assert not logging.getLogger(CELERY_CONSUMER_LOGGER).filters
        assert not logging.getLogger(CELERY_TRACE_LOGGER).filters
    finally:
        configure_logging("INFO")
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


@pytest.mark.slow
def test_real_worker_log_has_no_prompt_text(
    redis_client: redis.Redis,
    worker_factory: type[WorkerProcess],
) -> None:
    worker = worker_factory({"REDIS_URL": TEST_REDIS_URL}, queues=(QUEUE_FAST,)).start()
    assert worker.log_path is not None
    client = Celery(broker=TEST_REDIS_URL, backend=TEST_REDIS_URL, set_as_current=False)
    try:
        # A task no worker knows: Celery would log its whole body and headers.
        client.send_task(
            "tokenwindow.no_such_task",
            kwargs={"session_id": "s-1", "messages": [{"role": "user", "content": SECRET}]},
            queue=QUEUE_FAST,
        )
        sent = client.send_task(
            TASK_COUNT_TOKENS, kwargs={"model": "gpt-4o", "text": SECRET}, queue=QUEUE_FAST
        )
        assert sent.get(timeout=60)["tokens"] > 0
    finally:
        client.close()
    log = wait_for(worker.log_path, f"task_id={sent.id} state=SUCCESS")
    assert "Received unregistered task of type 'tokenwindow.no_such_task'" in log
    assert SECRET not in log
    # The task's start and end are one line each, ours; Celery's own repeats of them are kept
    # for debug level.
    assert log.count(f'msg="task started" task={TASK_COUNT_TOKENS} task_id={sent.id}') == 1
    assert log.count(f"task_id={sent.id} state=SUCCESS") == 1
    assert f"[{sent.id}] succeeded in" not in log
    assert f"[{sent.id}] received" not in log


def wait_for(path: Path, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    log = ""
    while time.monotonic() < deadline:
        log = path.read_text(encoding="utf-8", errors="replace")
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the worker log:\n{log}")


def test_celerys_own_task_lines_are_kept_for_debug_level() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    trace = logging.getLogger(CELERY_TRACE_LOGGER)
    try:
        configure_logging("INFO")
        assert not trace.isEnabledFor(logging.INFO)
        assert trace.isEnabledFor(logging.ERROR), "task failures are still Celery's to log"
        configure_logging(logging.DEBUG)
        assert trace.isEnabledFor(logging.INFO)
    finally:
        configure_logging("INFO")
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_the_workers_l_flag_wins_over_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery sends ``setup_logging`` with the ``-l`` level; ``LOG_LEVEL`` applies only without."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    get_settings.cache_clear()
    try:
        signals.setup_logging.send(sender=None, loglevel=logging.WARNING, logfile=None)
        assert root.level == logging.WARNING
        signals.setup_logging.send(sender=None, loglevel=None, logfile=None)
        assert root.level == logging.DEBUG
    finally:
        get_settings.cache_clear()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
