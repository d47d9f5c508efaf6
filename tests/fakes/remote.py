"""Drive a fake provider that runs in another process (Celery workers, benchmarks).

``FakeProviderProcess.spawn()`` starts ``python -m tests.fakes`` and offers the same
control surface as the in-process ``FakeProviderServer``, over ``/_control``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.fakes.async_server import URL_PREFIX
from tests.fakes.behaviour import Fault, Reply, ToolCall
from tests.fakes.routes import SENT_ROUTE

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class RemoteFakeProvider:
    """Control a fake provider by URL: inject faults, queue replies, read what it received."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base(self) -> str:
        return self.url

    @property
    def gemini_base(self) -> str:
        return f"{self.url}/v1beta"

    def _call(self, body: dict[str, Any] | None = None, path: str = "/_control") -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def inject(self, *faults: Fault) -> None:
        self._call({"faults": [f.to_json() for f in faults]})

    def queue_replies(self, *replies: str | Reply) -> None:
        self._call({"replies": [r if isinstance(r, str) else r.to_json() for r in replies]})

    def queue_tool_calls(self, *calls: ToolCall, text: str = "") -> None:
        self.queue_replies(Reply(text, calls))

    def configure(self, **options: Any) -> None:
        """Same keywords as ``Behaviour.configure`` (``unlimited=True`` clears the limit)."""
        command = {k: v for k, v in options.items() if k != "unlimited"}
        if options.get("unlimited"):
            command["context_limit"] = None
        self._call(command)

    def reset(self) -> None:
        self._call({"reset": True})

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Recorded requests as JSON dicts (no raw body)."""
        requests: list[dict[str, Any]] = self._call()["requests"]
        return requests

    @property
    def max_prompt_tokens(self) -> int:
        return int(self._call()["max_prompt_tokens"])

    def sent(self) -> list[tuple[float, str]]:
        """``(send time, SSE frame)`` of every text chunk sent (needs ``record_sends``)."""
        return [(float(at), str(frame)) for at, frame in self._call(path=SENT_ROUTE)]


class FakeProviderProcess(RemoteFakeProvider):
    """A fake provider in a child process; stop it with ``stop()`` or a ``with`` block."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        super().__init__(url)
        self.process = process

    @classmethod
    def spawn(
        cls,
        *,
        port: int = 0,
        context_limit: int | None = None,
        token_delay: float = 0.0,
        record_sends: bool = False,
    ) -> FakeProviderProcess:
        command = [sys.executable, "-m", "tests.fakes", "--port", str(port)]
        if context_limit is not None:
            command += ["--context-limit", str(context_limit)]
        if token_delay:
            command += ["--token-delay", str(token_delay)]
        if record_sends:
            command.append("--record-sends")
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith(URL_PREFIX):
            process.kill()
            raise RuntimeError(f"fake provider did not start (exit {process.wait()})")
        return cls(process, line.removeprefix(URL_PREFIX))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> FakeProviderProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
