"""``python -m tests.fakes --port 0``: the fake provider in its own process, on one event loop.

Paced streams are mostly waiting: a thread per stream (the in-process server) spends more CPU on
waking hundreds of threads than on the streams, and on a small machine that CPU is taken from
the service under test. Here every connection is a task on one uvloop loop, carrying out the
same ``tests.fakes.routes`` steps. Serves until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket

import uvloop

from tests.fakes.behaviour import Behaviour
from tests.fakes.routes import (
    SENT_ROUTE,
    HangUp,
    HttpRequest,
    Pause,
    ProviderState,
    Sent,
    Silence,
    Write,
    respond,
)

URL_PREFIX = "FAKE_PROVIDER_URL="
BACKLOG = 1024
"""Hundreds of clients connect at once; with a short backlog they lose SYNs and wait 1 s."""


async def _read_request(reader: asyncio.StreamReader, port: int) -> HttpRequest:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    request_line, *lines = head.split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    return HttpRequest(method, target, headers, body, port)


async def _serve_connection(
    state: ProviderState,
    stopping: asyncio.Event,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    port = writer.get_extra_info("peername")[1]
    try:
        keep_alive = True
        while keep_alive:
            request = await _read_request(reader, port)
            keep_alive = request.headers.get("connection", "").lower() != "close"
            for step in respond(state, request):
                match step:
                    case Write(data):
                        writer.write(data)
                    case Pause(seconds):
                        await writer.drain()
                        await asyncio.sleep(seconds)
                    case Silence(seconds):
                        await writer.drain()
                        await _wait(stopping, seconds)
                        keep_alive = False
                    case HangUp():
                        keep_alive = False
                    case Sent(data):
                        state.record_sent(data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client hung up, as clients of kept-alive connections do
    except asyncio.CancelledError:
        pass  # the server stops (its loop cancels open connections): not an error to report
    finally:
        writer.close()


async def _wait(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


async def serve(state: ProviderState, port: int) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    server = await asyncio.start_server(
        lambda r, w: _serve_connection(state, stopping, r, w),
        "127.0.0.1",
        port,
        backlog=BACKLOG,
    )
    host, bound = server.sockets[0].getsockname()[:2]
    print(f"{URL_PREFIX}http://{host}:{bound}", flush=True)
    async with server:
        await stopping.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--context-limit", type=int, default=None)
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds per chunk")
    parser.add_argument(
        "--record-sends", action="store_true", help=f"keep chunk send times for GET {SENT_ROUTE}"
    )
    args = parser.parse_args(argv)
    behaviour = Behaviour(context_limit=args.context_limit, token_delay=args.token_delay)
    state = ProviderState(behaviour, [] if args.record_sends else None)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(state, args.port))
