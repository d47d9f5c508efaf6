"""Knowing that the server is stopping, so open event streams can end instead of holding it up.

uvicorn waits for every open connection before it stops, and an event stream stays open as long
as its session is followed. As sse-starlette does, the handlers of the server's exit signals
are chained: the server still gets the signal, and an event tells each stream to finish.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from types import FrameType
from typing import Any

EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownSignal:
    """Set once the process is asked to exit; ``install`` in the app's lifespan."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Chain the exit signals' handlers (signals reach only the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()

        def handle(sig: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(self.event.set)
            previous = self._previous.get(sig)
            if callable(previous):
                previous(sig, frame)
            else:  # the default action (exit): restore it and let it happen
                signal.signal(sig, previous)
                signal.raise_signal(sig)

        for sig in EXIT_SIGNALS:
            self._previous[sig] = signal.signal(sig, handle)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
