"""A fake LLM provider over real HTTP: OpenAI chat completions, Anthropic Messages, Gemini.

Routes: ``POST /v1/chat/completions`` (and ``/chat/completions``), ``POST /v1/messages``,
``POST /v1beta/models/{model}:generateContent`` (and ``:streamGenerateContent?alt=sse``),
``POST /_control`` (JSON, see ``Behaviour.control``), ``GET /_control`` (recorded requests) and,
when started with ``record_sends``, ``GET /_control/sent`` (``[send time, SSE frame]`` of every
text chunk, so a benchmark can measure delivery delay against the moment a chunk left).
Streams use chunked transfer encoding as the real APIs do, so closing the socket mid-stream
is a protocol error the client sees, not a clean end of body.

Run it in-process with ``FakeProviderServer().start()`` or as its own process with
``python -m tests.fakes --port 0`` (prints ``FAKE_PROVIDER_URL=...`` once listening).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType, TracebackType
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from tests.fakes import anthropic_wire, gemini_wire, openai_wire
from tests.fakes.behaviour import (
    Behaviour,
    Fault,
    RecordedRequest,
    Reply,
    ToolCall,
    count_prompt,
    count_text,
    truncate_reply,
)
from tests.fakes.wire import Frame, Outcome, ParsedRequest, Usage

ROUTES: dict[str, tuple[str, ModuleType]] = {
    "/v1/chat/completions": ("openai", openai_wire),
    "/chat/completions": ("openai", openai_wire),
    "/v1/messages": ("anthropic", anthropic_wire),
}
GEMINI_ROUTE = re.compile(
    r"/v1(?:beta|alpha)?/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)"
)
"""The model is part of a Gemini URL; streaming is a different method, not a body field."""
SENT_ROUTE = "/_control/sent"


def _api_key(headers: Any, path: str) -> str | None:
    auth = headers.get("Authorization") or ""
    if auth.startswith("Bearer "):
        return str(auth.removeprefix("Bearer "))
    key = headers.get("x-api-key") or headers.get("x-goog-api-key")
    if key:
        return str(key)
    query = parse_qs(urlsplit(path).query).get("key")
    return query[0] if query else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """Headers and body go out in separate writes; Nagle would hold the body back ~40 ms."""
    server: _Server
    ids: ClassVar[itertools.count[int]] = itertools.count(1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request access logs; tests assert on ``requests`` instead."""

    # --- plumbing --------------------------------------------------------------------------
    def _send_json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        blob = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(blob)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(blob)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        data = json.loads(self.rfile.read(length) or b"{}")
        return data if isinstance(data, dict) else {}

    def _go_silent(self, seconds: float) -> None:
        """Send nothing more for ``seconds`` (or until the server stops), then hang up."""
        self.server.stopping.wait(seconds)
        self.close_connection = True

    # --- routes ----------------------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path == "/_control":
            self._send_json(200, self.server.behaviour.snapshot())
        elif self.path == SENT_ROUTE and self.server.sent is not None:
            self._send_json(200, self.server.sent)
        else:
            self._send_json(404, {"error": {"message": "not found", "type": "not_found"}})

    def do_POST(self) -> None:
        body = self._read_json()
        if self.path == "/_control":
            self.server.behaviour.control(body)
            self._send_json(200, {"ok": True})
            return
        path = self.path.split("?", 1)[0]
        gemini = GEMINI_ROUTE.fullmatch(path)
        if gemini is not None:
            streaming = gemini["method"] == "streamGenerateContent"
            request = gemini_wire.parse(body, gemini["model"], stream=streaming)
            self._chat("gemini", gemini_wire, request, body)
            return
        route = ROUTES.get(path)
        if route is None:
            self._send_json(404, {"error": {"message": "not found", "type": "not_found"}})
            return
        api, wire = route
        self._chat(api, wire, wire.parse(body), body)

    def _chat(
        self, api: str, wire: ModuleType, request: ParsedRequest, body: dict[str, Any]
    ) -> None:
        behaviour = self.server.behaviour
        prompt_tokens = count_prompt(request.messages)
        behaviour.record(
            RecordedRequest(
                api=api,  # type: ignore[arg-type]
                path=self.path,
                model=request.model,
                stream=request.stream,
                messages=request.messages,
                prompt_tokens=prompt_tokens,
                api_key=_api_key(self.headers, self.path),
                body=body,
                tools=request.tools,
                params=request.params,
                client_port=self.client_address[1],
            )
        )
        fault = behaviour.next_fault()
        if fault is not None and fault.kind == "event" and not request.stream:
            fault = Fault.error(fault.status)
        if fault is not None and fault.kind == "status":
            headers = {}
            hint: dict[str, float] = {}
            if fault.retry_after is not None:
                if getattr(wire, "RETRY_AFTER_IN_BODY", False):
                    hint["retry_after"] = fault.retry_after
                else:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
            error = wire.error_body(fault.status, fault.message, **hint)
            self._send_json(fault.status, error, headers)
            return
        if fault is not None and fault.kind == "hang" and fault.after_chunks == 0:
            self._go_silent(fault.seconds)
            return
        limit = behaviour.context_limit
        if limit is not None and prompt_tokens > limit:
            self._send_json(400, wire.context_error_body(limit, prompt_tokens))
            return
        scripted = behaviour.next_reply(request.messages)
        pieces, finish = truncate_reply(scripted.text, request.max_tokens)
        calls = scripted.tool_calls if finish == "stop" else ()
        if calls:
            finish = "tool_calls"
        written = "".join(pieces) + "".join(c.arguments_json for c in calls)
        outcome = Outcome(pieces, finish, Usage(prompt_tokens, count_text(written)), calls)
        request_id = f"fake{next(self.ids)}"
        if request.stream:
            self._stream(wire.stream(request_id, request, outcome), fault, wire)
        else:
            self._respond(wire.response(request_id, request.model, outcome), fault)

    def _respond(self, payload: dict[str, Any], fault: Fault | None) -> None:
        if fault is None:
            self._send_json(200, payload)
            return
        blob = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(blob)))
        self.end_headers()
        self.wfile.write(blob[: len(blob) // 2])
        if fault.kind == "hang":
            self._go_silent(fault.seconds)
        self.close_connection = True

    def _stream(self, frames: list[Frame], fault: Fault | None, wire: ModuleType) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        delay = self.server.behaviour.token_delay
        sent_text = 0
        try:
            for frame in frames:
                if frame.text:
                    if fault is not None and sent_text >= fault.after_chunks:
                        if fault.kind == "event":
                            self._write_chunk(wire.error_event(fault.status))
                            self._write_chunk(b"")
                            return
                        if fault.kind == "hang":
                            self._go_silent(fault.seconds)
                        self.close_connection = True
                        return
                    if delay:
                        self.server.stopping.wait(delay)
                    sent_text += 1
                self._write_chunk(frame.data)
                if frame.text and self.server.sent is not None:
                    self.server.sent.append((time.time(), frame.data.decode()))
            self._write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    """Hundreds of streams connect at once in the load tests; the default backlog is 5."""
    block_on_close = False
    request_queue_size = 1024
    """Listen backlog: with the default 5, hundreds of clients connecting at once lose SYNs
    and wait a whole second to retry, which is the kernel's delay, not the provider's."""
    behaviour: Behaviour
    stopping: threading.Event
    sent: list[tuple[float, str]] | None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client closing its kept-alive connection is normal, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            super().handle_error(request, client_address)


class FakeProviderServer:
    """One fake provider on 127.0.0.1; every route shares one ``Behaviour``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        context_limit: int | None = None,
        token_delay: float = 0.0,
        record_sends: bool = False,
    ) -> None:
        self.behaviour = Behaviour(context_limit=context_limit, token_delay=token_delay)
        self._httpd = _Server((host, port), _Handler)
        self._httpd.behaviour = self.behaviour
        self._httpd.stopping = threading.Event()
        self._httpd.sent = [] if record_sends else None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def openai_base(self) -> str:
        """``api_base`` for OpenAI-compatible clients (the SDK appends ``/chat/completions``)."""
        return f"{self.url}/v1"

    @property
    def anthropic_base(self) -> str:
        """``api_base`` for litellm's Anthropic route (it appends ``/v1/messages``)."""
        return self.url

    @property
    def gemini_base(self) -> str:
        """``api_base`` for litellm's ``gemini/`` route (it appends ``/models/{model}:...``)."""
        return f"{self.url}/v1beta"

    def start(self) -> FakeProviderServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-provider", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hanging handlers are released at once."""
        self._httpd.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> FakeProviderServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- the same control surface as ``RemoteFakeProvider`` --------------------------------
    def inject(self, *faults: Fault) -> None:
        self.behaviour.inject(*faults)

    def queue_replies(self, *replies: str | Reply) -> None:
        self.behaviour.queue_replies(*replies)

    def queue_tool_calls(self, *calls: ToolCall, text: str = "") -> None:
        self.behaviour.queue_tool_calls(*calls, text=text)

    def configure(self, **options: Any) -> None:
        self.behaviour.configure(**options)

    def reset(self) -> None:
        self.behaviour.reset()

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.behaviour.requests

    @property
    def max_prompt_tokens(self) -> int:
        return self.behaviour.max_prompt_tokens


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--context-limit", type=int, default=None)
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds per chunk")
    parser.add_argument(
        "--record-sends", action="store_true", help=f"keep chunk send times for GET {SENT_ROUTE}"
    )
    args = parser.parse_args(argv)
    server = FakeProviderServer(
        port=args.port,
        context_limit=args.context_limit,
        token_delay=args.token_delay,
        record_sends=args.record_sends,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    server.start()
    print(f"FAKE_PROVIDER_URL={server.url}", flush=True)
    done.wait()
    server.stop()
