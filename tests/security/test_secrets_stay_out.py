"""Prompt text and secrets stay out of worker logs and Sentry, with Redis behind an ACL user.

One worker runs against a private ``redis-server`` that only admits an ACL user with a
password, and sends Sentry events to a fake Sentry endpoint run here. Turns carry a distinctive
string through a provider 500 (whose message quotes the prompt), an auth error, and a task that
crashes; the string must appear in no log line and no captured event, while an event does
arrive and the turns still end clearly.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.chaos.support import run_turn, stack
from tests.fakes.behaviour import Fault
from tests.fakes.specs import FAKE_KEY
from tests.redis_server import RedisServer
from tests.stack import BIG_MODEL, Stack
from tokenwindow.constants import TASK_COMPLETE_TURN
from tokenwindow.producer import TaskProducer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SECRET = "zebra-quartz-7731-do-not-leak"
"""Distinctive prompt text: any appearance in a log line or an event is a leak."""
PASSWORD = "acl-pass-" + uuid.uuid4().hex
EVENT_WAIT_SECONDS = 20.0


class FakeSentry(ThreadingHTTPServer):
    """Accepts Sentry envelopes over HTTP and keeps their decoded bodies."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SentryHandler)
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server_address[1]}/1"

    def events(self) -> list[bytes]:
        with self.lock:
            return [b for b in self.bodies if b'"type":"event"' in b.replace(b" ", b"")]


class _SentryHandler(BaseHTTPRequestHandler):
    server: FakeSentry

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the captured bodies instead."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli  # type: ignore[import-not-found,unused-ignore]

            body = brotli.decompress(body)
        with self.server.lock:
            self.server.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


@dataclass
class Outcome:
    stack: Stack
    sentry: FakeSentry
    results: list[Any]
    crash_state: str


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    tmp = tmp_path_factory.mktemp("security")
    acl = f"user tw on >{PASSWORD} ~* &* +@all"
    sentry = FakeSentry()
    threading.Thread(target=sentry.serve_forever, args=(0.05,), daemon=True).start()
    with RedisServer() as server:
        admin = redis.Redis(port=server.port)
        admin.execute_command(*f"ACL SETUSER {acl.removeprefix('user ')}".split())
        admin.execute_command("ACL", "SETUSER", "default", "off")
        url = server.url(0, user="tw", password=PASSWORD)
        with stack(tmp, url, SENTRY_DSN=sentry.dsn) as running:
            running.worker()

            async def turns() -> list[Any]:
                async with running.client() as client:
                    good = await run_turn(client, f"ok-{uuid.uuid4().hex[:8]}", "hello there")
                    running.provider.inject(
                        Fault.error(500, message=f"upstream failed on prompt: {SECRET} and more"),
                        Fault.error(401, message=f"invalid key; your prompt was {SECRET} here"),
                    )
                    bad = await run_turn(client, f"s-{uuid.uuid4().hex[:8]}", f"my {SECRET}")
                    events = await client.redis.xrange(f"tw:{{{bad.session_id}}}:events")
                    return [good, bad, events]

            results = asyncio.run(turns())
            producer = TaskProducer(url, backend_url=url)
            try:
                # A task that crashes (a producer sent a string budget): Sentry must see it.
                crash = producer.app.send_task(
                    TASK_COMPLETE_TURN,
                    kwargs={
                        "session_id": results[1].session_id,
                        "turn_id": results[1].turn_id + "x",
                        "model": BIG_MODEL,
                        "max_tokens": f"lots {SECRET}",
                    },
                    queue="completions",
                )
                try:
                    crash.get(timeout=30, propagate=False)
                    crash_state = str(crash.state)
                finally:
                    crash.forget()
            finally:
                producer.close()
            deadline = time.monotonic() + EVENT_WAIT_SECONDS
            while not sentry.events() and time.monotonic() < deadline:
                time.sleep(0.2)
            running.workers[0].stop()
            yield Outcome(running, sentry, results, crash_state)
    sentry.shutdown()
    sentry.server_close()


def test_turns_work_through_an_acl_user_and_fail_clearly(outcome: Outcome) -> None:
    good, bad, _ = outcome.results
    assert good.status == "completed"
    assert (bad.status, bad.code) == ("failed", "provider_auth")
    assert outcome.crash_state == "FAILURE"


def test_prompt_text_is_in_no_log_line_and_no_turn_event(outcome: Outcome) -> None:
    logs = outcome.stack.logs()
    assert "task finished" in logs, "the worker log was captured"
    assert SECRET not in logs
    published = " ".join(str(fields) for _, fields in outcome.results[2])
    assert "turn_failed" in published
    assert SECRET not in published, "provider messages that quote the prompt are withheld"


def test_prompt_text_is_in_no_sentry_event(outcome: Outcome) -> None:
    assert outcome.sentry.events(), "the crashed task reached Sentry"
    leaks = [b for b in outcome.sentry.bodies if SECRET.encode() in b]
    assert not leaks


def test_no_password_or_api_key_in_logs(outcome: Outcome) -> None:
    logs = outcome.stack.logs()
    assert "Connected to redis://" in logs
    assert PASSWORD not in logs
    assert FAKE_KEY not in logs
    assert all(PASSWORD.encode() not in body for body in outcome.sentry.bodies)


def test_worker_log_files_exist(outcome: Outcome) -> None:
    assert all(w.log_path is not None and Path(w.log_path).exists() for w in outcome.stack.workers)
