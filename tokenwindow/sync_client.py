"""A synchronous twin of the client for non-async callers.

It runs the async client on a private event loop in a daemon thread, so both share one
implementation: every method here forwards to its async namesake and waits for the answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

from tokenwindow.client import TokenManagementClient
from tokenwindow.events import Event

T = TypeVar("T")


class SyncTokenManagementClient:
    """``with SyncTokenManagementClient() as client: client.create_completion(...)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def build() -> TokenManagementClient:
            return TokenManagementClient(*args, **kwargs)

        self._client = self._run(build())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        while True:
            try:
                yield self._run(anext(iterator))  # type: ignore[arg-type]
            except StopAsyncIteration:
                return

    def __enter__(self) -> SyncTokenManagementClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def submit_turn(self, *args: Any, **kwargs: Any) -> str:
        return self._run(self._client.submit_turn(*args, **kwargs))

    def create_completion(self, *args: Any, **kwargs: Any) -> Iterator[str] | dict[str, Any]:
        result = self._run(self._client.create_completion(*args, **kwargs))
        return result if isinstance(result, dict) else self._iterate(result)

    def subscribe(self, *args: Any, **kwargs: Any) -> Iterator[Event]:
        return self._iterate(self._client.subscribe(*args, **kwargs))

    def wait_for_turn(self, *args: Any, **kwargs: Any) -> Event:
        return self._run(self._client.wait_for_turn(*args, **kwargs))

    def count_tokens(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self._run(self._client.count_tokens(*args, **kwargs))

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        return self._run(self._client.get_session(session_id))

    def get_transcript(self, session_id: str) -> list[Any]:
        return self._run(self._client.get_transcript(session_id))

    def list_sessions(
        self, limit: int = 100, offset: int = 0, *, prefix: str = ""
    ) -> list[dict[str, Any]]:
        return self._run(self._client.list_sessions(limit, offset, prefix=prefix))

    def delete_session(self, session_id: str) -> bool:
        return self._run(self._client.delete_session(session_id))

    def metrics(self) -> dict[str, Any]:
        return self._run(self._client.metrics())

    def models(self) -> list[dict[str, Any]]:
        return self._client.models()
