"""One running stack for tests, fault scenarios and benchmarks.

``Stack`` wires a fake provider, a models file naming it, the environment every process of the
run shares (the client's settings read it too) and real workers, started as the Procfile starts
them. On exit it kills the workers, stops the provider and puts the environment back, even after
an error. Test fixtures, ``tests.chaos`` and ``bench`` all build on it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Generic, Literal, Protocol, TypeVar

import redis
import yaml

from tests.fakes.specs import FAKE_KEY
from tests.harness import WorkerProcess
from tokenwindow.client import TokenManagementClient
from tokenwindow.constants import QUEUES
from tokenwindow.models import get_registry
from tokenwindow.settings import get_settings

BIG_MODEL = "fake-gpt-4o"
TINY_MODEL = "tiny-gpt"
"""2,000 input tokens behind an OpenAI-compatible endpoint that rejects anything larger: a few
long messages push a session over the hard threshold."""
TINY_WINDOW = 2_000
AGENT_MODEL = "agent-gpt"
"""4,000 input tokens: the window of the agent tests, whose histories grow ten times larger."""
AGENT_WINDOW = 4_000
CLAUDE_MODEL = "fake-claude"
ESTIMATED_MODEL = "tiny-claude"
"""4,000 input tokens on the Anthropic route: counted by estimate, so it has a wide margin."""
GEMINI_MODEL = "fake-gemini"
LOG_TAIL_CHARS = 3_000


@dataclass(frozen=True)
class FakeModel:
    """One ``model_list`` entry served by the fake provider."""

    name: str
    litellm_model: str
    route: Literal["openai", "anthropic", "gemini"]
    max_input_tokens: int
    max_output_tokens: int

    def litellm_params(self, provider: Provider) -> dict[str, str]:
        """What a direct ``litellm`` call (or the models file) needs to reach the fake."""
        bases = {
            "openai": provider.openai_base,
            "anthropic": provider.anthropic_base,
            "gemini": provider.gemini_base,
        }
        return {"model": self.litellm_model, "api_base": bases[self.route], "api_key": FAKE_KEY}


CLAUDE = "anthropic/claude-3-5-sonnet-20241022"
FAKE_MODELS = (
    FakeModel(BIG_MODEL, "openai/gpt-4o", "openai", 128_000, 1_000),
    FakeModel(TINY_MODEL, "openai/gpt-4o", "openai", TINY_WINDOW, 200),
    FakeModel(AGENT_MODEL, "openai/gpt-4o", "openai", AGENT_WINDOW, 200),
    FakeModel(CLAUDE_MODEL, CLAUDE, "anthropic", 200_000, 1_000),
    FakeModel(ESTIMATED_MODEL, CLAUDE, "anthropic", 4_000, 200),
    FakeModel(GEMINI_MODEL, "gemini/gemini-1.5-pro", "gemini", 2_097_152, 1_000),
)


class Provider(Protocol):
    """What a stack needs of a fake provider, in-process or in its own process."""

    @property
    def openai_base(self) -> str: ...
    @property
    def anthropic_base(self) -> str: ...
    @property
    def gemini_base(self) -> str: ...
    def __enter__(self) -> Provider: ...
    def __exit__(self, *exc: object) -> None: ...


def write_models_file(
    path: Path, provider: Provider, models: tuple[FakeModel, ...] = FAKE_MODELS
) -> Path:
    entries = [
        {
            "model_name": model.name,
            "litellm_params": model.litellm_params(provider),
            "model_info": {
                "max_input_tokens": model.max_input_tokens,
                "max_output_tokens": model.max_output_tokens,
            },
        }
        for model in models
    ]
    path.write_text(yaml.safe_dump({"model_list": entries}), encoding="utf-8")
    return path


def fake_model(name: str) -> FakeModel:
    return next(model for model in FAKE_MODELS if model.name == name)


def flush(redis_url: str) -> None:
    """Empty a database: tasks an earlier run left queued (retries, parked turns) must not run."""
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()


P = TypeVar("P", bound=Provider)


class Stack(Generic[P]):
    """``with Stack(redis_url, provider=FakeProviderServer) as stack:`` then ``stack.worker()``.

    ``env`` adds to (or overrides) what every process gets: ``REDIS_URL`` and the models file.
    Without ``workdir`` the stack keeps its models file and worker logs in a temporary folder.
    """

    provider: P

    def __init__(
        self,
        redis_url: str,
        *,
        provider: Callable[[], P],
        workdir: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.redis_url = redis_url
        self._new_provider = provider
        self._workdir = workdir
        self._extra_env = env or {}
        self.env: dict[str, str] = {}
        self.workers: list[WorkerProcess] = []
        self._exits = contextlib.ExitStack()

    @property
    def dir(self) -> Path:
        """Where the models file and the worker logs are."""
        return Path(self.env["TOKENWINDOW_MODELS_FILE"]).parent

    # --- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Stack[P]:
        try:
            workdir = self._workdir or Path(
                self._exits.enter_context(tempfile.TemporaryDirectory(prefix="tokenwindow-"))
            )
            self.provider = self._new_provider()
            self._exits.enter_context(self.provider)
            models = write_models_file(workdir / "models.yaml", self.provider)
            self.env = {
                "REDIS_URL": self.redis_url,
                "TOKENWINDOW_MODELS_FILE": str(models),
                **self._extra_env,
            }
            self._exits.callback(self._kill_workers)
            self._exits.enter_context(_environment(self.env))
        except BaseException:
            self._exits.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exits.close()

    def _kill_workers(self) -> None:
        for worker in reversed(self.workers):
            worker.kill()
        self.workers.clear()

    # --- workers ---------------------------------------------------------------------------
    def worker(
        self,
        *,
        concurrency: int = 2,
        pool: str = "prefork",
        start: bool = True,
        app: str = "workers.app",
        queues: tuple[str, ...] = QUEUES,
    ) -> WorkerProcess:
        """A worker on ``queues`` (all by default); ``pool="threads"`` is how the Procfile
        serves turns. ``start=False`` leaves it to ``start`` (a replacement after a kill)."""
        log = self.dir / f"worker{len(self.workers) + 1}.log"
        worker = WorkerProcess(
            self.env, concurrency=concurrency, log_path=log, pool=pool, app=app, queues=queues
        )
        self.workers.append(worker)
        return self.start(worker) if start else worker

    @staticmethod
    def start(worker: WorkerProcess, attempts: int = 5) -> WorkerProcess:
        """Start and wait for a ping; a broker that just came back may drop the first pings."""
        worker.start(wait=False)
        for attempt in range(attempts):
            try:
                worker.wait_ready()
                return worker
            except (redis.ConnectionError, OSError):
                if attempt == attempts - 1:
                    raise
                time.sleep(1.0)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"worker did not start: {exc}\n{_tail(worker)}") from None
        return worker

    def stop(self, worker: WorkerProcess) -> None:
        """Warm shutdown of one worker (its running tasks finish)."""
        worker.stop()
        self.workers.remove(worker)

    # --- using it --------------------------------------------------------------------------
    def client(self) -> TokenManagementClient:
        return TokenManagementClient(self.redis_url, settings=get_settings())

    def logs(self) -> str:
        return "\n".join(_tail(worker, None) for worker in self.workers)


def _tail(worker: WorkerProcess, chars: int | None = LOG_TAIL_CHARS) -> str:
    if worker.log_path is None or not worker.log_path.exists():
        return ""
    text = worker.log_path.read_text(encoding="utf-8", errors="replace")
    return text if chars is None else text[-chars:]


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """Set ``env`` for this process (a broker URL only if ``env`` names one), then restore."""
    saved = {key: os.environ.get(key) for key in [*env, "BROKER_URL"]}
    os.environ.pop("BROKER_URL", None)
    os.environ.update(env)
    get_settings.cache_clear()
    get_registry.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        get_registry.cache_clear()
