"""What the fake provider answers, as steps any HTTP transport can carry out.

``respond`` turns one request into a sequence of ``Step``s: bytes to write (status line and
headers included), a pause between stream chunks, a silence before hanging up, a hang-up, and
the moment a text chunk left (for ``record_sends``). The threaded server (in-process, for tests)
and the asyncio server (its own process, for hundreds of paced streams) both run these steps,
so faults, wire formats and pacing are one piece of code.
"""

from __future__ import annotations

import functools
import http
import itertools
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import anthropic_wire, gemini_wire, openai_wire
from tests.fakes.behaviour import (
    Behaviour,
    Fault,
    RecordedRequest,
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
CONTROL_ROUTE = "/_control"
SENT_ROUTE = "/_control/sent"


@dataclass(frozen=True)
class Write:
    data: bytes


@dataclass(frozen=True)
class Pause:
    """Wait before the next chunk (cut short when the server stops)."""

    seconds: float


@dataclass(frozen=True)
class Silence:
    """Send nothing more for ``seconds`` (or until the server stops), then hang up."""

    seconds: float


@dataclass(frozen=True)
class HangUp:
    """Close the connection after what was written (no clean end of body)."""


@dataclass(frozen=True)
class Sent:
    """A text chunk just left: ``record_sends`` keeps when."""

    data: bytes


Step = Write | Pause | Silence | HangUp | Sent


@dataclass
class ProviderState:
    """What every connection of one fake provider shares."""

    behaviour: Behaviour
    sent: list[tuple[float, str]] | None = None
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def record_sent(self, frame: bytes) -> None:
        """When a text chunk left (``record_sends``), for the delivery-delay benchmark."""
        assert self.sent is not None
        self.sent.append((time.time(), frame.decode()))


@dataclass(frozen=True)
class HttpRequest:
    """One request as either transport read it. Header names are looked up in lower case: the
    threaded server's headers ignore case, and the loop server lower-cases them."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    client_port: int

    @functools.cached_property
    def data(self) -> dict[str, Any]:
        """The body as a JSON object (empty when there is none)."""
        data = json.loads(self.body or b"{}")
        return data if isinstance(data, dict) else {}


def respond(state: ProviderState, request: HttpRequest) -> Iterator[Step]:
    """The steps that answer one request."""
    data = request.data
    path = request.path
    if request.method == "GET":
        if path == CONTROL_ROUTE:
            yield _json_reply(200, state.behaviour.snapshot())
        elif path == SENT_ROUTE and state.sent is not None:
            yield _json_reply(200, state.sent)
        else:
            yield _not_found()
        return
    if path == CONTROL_ROUTE:
        state.behaviour.control(data)
        yield _json_reply(200, {"ok": True})
        return
    gemini = GEMINI_ROUTE.fullmatch(path.split("?", 1)[0])
    if gemini is not None:
        streaming = gemini["method"] == "streamGenerateContent"
        parsed = gemini_wire.parse(data, gemini["model"], stream=streaming)
        yield from _chat(state, request, "gemini", gemini_wire, parsed)
        return
    route = ROUTES.get(path.split("?", 1)[0])
    if route is None:
        yield _not_found()
        return
    api, wire = route
    yield from _chat(state, request, api, wire, wire.parse(data))


def _chat(
    state: ProviderState, http: HttpRequest, api: str, wire: ModuleType, request: ParsedRequest
) -> Iterator[Step]:
    behaviour = state.behaviour
    prompt_tokens = count_prompt(request.messages)
    behaviour.record(
        RecordedRequest(
            api=api,  # type: ignore[arg-type]
            path=http.path,
            model=request.model,
            stream=request.stream,
            messages=request.messages,
            prompt_tokens=prompt_tokens,
            api_key=_api_key(http.headers, http.path),
            body=http.data,
            tools=request.tools,
            params=request.params,
            client_port=http.client_port,
        )
    )
    fault = behaviour.next_fault()
    if fault is not None and fault.kind == "event" and not request.stream:
        fault = Fault.error(fault.status)
    if fault is not None and fault.kind == "status":
        extra = {}
        hint: dict[str, float] = {}
        if fault.retry_after is not None:
            if getattr(wire, "RETRY_AFTER_IN_BODY", False):
                hint["retry_after"] = fault.retry_after
            else:
                extra["Retry-After"] = f"{fault.retry_after:g}"
        yield _json_reply(fault.status, wire.error_body(fault.status, fault.message, **hint), extra)
        return
    if fault is not None and fault.kind == "hang" and fault.after_chunks == 0:
        yield Silence(fault.seconds)
        return
    limit = behaviour.context_limit
    if limit is not None and prompt_tokens > limit:
        yield _json_reply(400, wire.context_error_body(limit, prompt_tokens))
        return
    scripted = behaviour.next_reply(request.messages)
    pieces, finish = truncate_reply(scripted.text, request.max_tokens)
    calls = scripted.tool_calls if finish == "stop" else ()
    if calls:
        finish = "tool_calls"
    written = "".join(pieces) + "".join(c.arguments_json for c in calls)
    outcome = Outcome(pieces, finish, Usage(prompt_tokens, count_text(written)), calls)
    request_id = f"fake{next(state.ids)}"
    if request.stream:
        frames = wire.stream(request_id, request, outcome)
        yield from _stream(frames, fault, wire, behaviour.token_delay, state.sent is not None)
    else:
        yield from _whole(wire.response(request_id, request.model, outcome), fault)


def _whole(payload: dict[str, Any], fault: Fault | None) -> Iterator[Step]:
    """A JSON reply; a fault cuts it in half (and may hang first)."""
    if fault is None:
        yield _json_reply(200, payload)
        return
    blob = json.dumps(payload).encode()
    yield Write(_head(200, {"Content-Type": "application/json", "Content-Length": len(blob)}))
    yield Write(blob[: len(blob) // 2])
    if fault.kind == "hang":
        yield Silence(fault.seconds)
    yield HangUp()


def _stream(
    frames: list[Frame], fault: Fault | None, wire: ModuleType, delay: float, record: bool
) -> Iterator[Step]:
    """Server-sent events in chunked transfer encoding, as the real APIs stream."""
    yield Write(
        _head(
            200,
            {
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "Transfer-Encoding": "chunked",
            },
        )
    )
    sent_text = 0
    for frame in frames:
        if frame.text:
            if fault is not None and sent_text >= fault.after_chunks:
                if fault.kind == "event":
                    yield Write(_chunk(wire.error_event(fault.status)) + _chunk(b""))
                    return
                if fault.kind == "hang":
                    yield Silence(fault.seconds)
                yield HangUp()
                return
            if delay:
                yield Pause(delay)
            sent_text += 1
        yield Write(_chunk(frame.data))
        if frame.text and record:
            yield Sent(frame.data)
    yield Write(_chunk(b""))


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _head(status: int, headers: Mapping[str, object]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_reason(status)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:  # 529, Anthropic's "overloaded", is no standard status
        return "Error"


def _json_reply(status: int, body: object, headers: Mapping[str, str] | None = None) -> Write:
    blob = json.dumps(body).encode()
    head = {"Content-Type": "application/json", "Content-Length": len(blob), **(headers or {})}
    return Write(_head(status, head) + blob)


def _not_found() -> Write:
    return _json_reply(404, {"error": {"message": "not found", "type": "not_found"}})


def _api_key(headers: Mapping[str, str], path: str) -> str | None:
    auth = headers.get("authorization") or ""
    if auth.startswith("Bearer "):
        return auth.removeprefix("Bearer ")
    for name in ("x-api-key", "x-goog-api-key"):
        key = headers.get(name)
        if key:
            return key
    query = parse_qs(urlsplit(path).query).get("key")
    return query[0] if query else None
