"""A fake LLM provider over real HTTP: OpenAI chat completions, Anthropic Messages, Gemini.

Routes: ``POST /v1/chat/completions`` (and ``/chat/completions``), ``POST /v1/messages``,
``POST /v1beta/models/{model}:generateContent`` (and ``:streamGenerateContent?alt=sse``),
``POST /_control`` (JSON, see ``Behaviour.control``), ``GET /_control`` (recorded requests) and,
when started with ``record_sends``, ``GET /_control/sent`` (``[send time, SSE frame]`` of every
text chunk, so a benchmark can measure delivery delay against the moment a chunk left).
Streams use chunked transfer encoding as the real APIs do, so closing the socket mid-stream
is a protocol error the client sees, not a clean end of body.

Run it in-process with ``FakeProviderServer().start()`` (a thread per connection), or as its own
process with ``python -m tests.fakes --port 0`` (one asyncio loop, for hundreds of paced
streams; see ``tests.fakes.async_server``). Both carry out the same ``tests.fakes.routes``.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from tests.fakes.behaviour import Behaviour, Fault, RecordedRequest, Reply, ToolCall
from tests.fakes.routes import (
    HangUp,
    HttpRequest,
    Pause,
    ProviderState,
    Sent,
    Silence,
    Write,
    respond,
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """Headers and body go out in separate writes; Nagle would hold the body back ~40 ms."""
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request access logs; tests assert on ``requests`` instead."""

    def do_GET(self) -> None:
        self._answer("GET", b"")

    def do_POST(self) -> None:
        self._answer("POST", self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _answer(self, method: str, body: bytes) -> None:
        state = self.server.state
        request = HttpRequest(method, self.path, self.headers, body, self.client_address[1])
        steps = respond(state, request)
        try:
            for step in steps:
                match step:
                    case Write(data):
                        self.wfile.write(data)
                    case Pause(seconds):
                        self.server.stopping.wait(seconds)
                    case Silence(seconds):
                        self.server.stopping.wait(seconds)
                        self.close_connection = True
                    case HangUp():
                        self.close_connection = True
                    case Sent(data):
                        state.record_sent(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024
    """Listen backlog: with the default 5, hundreds of clients connecting at once lose SYNs
    and wait a whole second to retry, which is the kernel's delay, not the provider's."""
    state: ProviderState
    stopping: threading.Event

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
        self._httpd.state = ProviderState(self.behaviour, [] if record_sends else None)
        self._httpd.stopping = threading.Event()
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
