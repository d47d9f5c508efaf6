"""A stopped Redis or broker: one line naming the URL (password hidden) and the setting, exit 3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_REDIS_URL
from tests.harness import WorkerProcess
from tokenwindow.cli import EXIT_UNREACHABLE, main
from tokenwindow.models import get_registry
from tokenwindow.settings import get_settings
from workers.embedded_redis import free_port

pytestmark = pytest.mark.long

PASSWORD = "hunter2"


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Settings and the model registry (which reads the models file) as this test sets them."""
    get_settings.cache_clear()
    get_registry.cache_clear()
    yield
    get_settings.cache_clear()
    get_registry.cache_clear()


@pytest.fixture
def transcripts(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    line = {"id": "a", "messages": [{"role": "user", "content": "hello there"}]}
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    return path


def closed_url(scheme: str = "redis") -> str:
    return f"{scheme}://:{PASSWORD}@127.0.0.1:{free_port()}/0"


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == EXIT_UNREACHABLE
    out, err = capsys.readouterr()
    assert err.count("\n") == 1, err
    assert err.startswith("tokenwindow: error: ") and "Traceback" not in err
    assert PASSWORD not in out + err
    return err


REDIS_COMMANDS = (
    ["sessions", "list"],
    ["sessions", "show", "s-1"],
    ["sessions", "transcript", "s-1"],
    ["sessions", "delete", "s-1"],
    ["metrics"],
    ["demo", "--turns", "1"],
)


@pytest.mark.parametrize("argv", REDIS_COMMANDS, ids=" ".join)
def test_a_stopped_redis_is_one_line_naming_redis_url(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", closed_url())
    monkeypatch.delenv("BROKER_URL", raising=False)
    err = one_line_error(capsys, argv)
    assert "does not answer at redis://:***@127.0.0.1:" in err
    assert "REDIS_URL" in err


def test_compress_with_a_stopped_broker_names_broker_url(
    transcripts: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("BROKER_URL", closed_url("amqp"))
    argv = ["compress", str(transcripts), "-o", str(tmp_path / "out.jsonl"), "--ratio", "0.5"]
    err = one_line_error(capsys, argv)
    assert "the broker does not answer at amqp://:***@127.0.0.1:" in err
    assert "set BROKER_URL" in err


def test_compress_with_redis_as_the_stopped_broker_names_both_settings(
    transcripts: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", closed_url())
    monkeypatch.delenv("BROKER_URL", raising=False)
    argv = ["compress", str(transcripts), "-o", str(tmp_path / "out.jsonl"), "--ratio", "0.5"]
    err = one_line_error(capsys, argv)
    assert "BROKER_URL (unset, so REDIS_URL)" in err


def test_the_demo_without_workers_says_so_at_once(
    redis_client: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.delenv("BROKER_URL", raising=False)
    err = one_line_error(capsys, ["demo", "--turns", "1"])
    assert "no worker answers on the broker at redis://127.0.0.1:6379" in err
    assert "make run" in err


@pytest.mark.slow
def test_the_demo_stops_with_one_line_when_the_provider_does_not_answer(
    redis_client: object,
    worker_factory: type[WorkerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    entry = {
        "model_name": "dead-model",
        "litellm_params": {"model": "openai/gpt-4o", "api_base": base, "api_key": "sk-x"},
        "model_info": {"max_input_tokens": 128_000, "max_output_tokens": 1_000},
    }
    models = tmp_path / "models.yaml"
    models.write_text(json.dumps({"model_list": [entry]}), encoding="utf-8")
    env = {"TOKENWINDOW_MODELS_FILE": str(models), "TOKENWINDOW_MAX_RETRIES": "0"}
    worker_factory({"REDIS_URL": TEST_REDIS_URL, **env}).start()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    err = one_line_error(capsys, ["demo", "--turns", "3", "--model", "dead-model"])
    assert f"the provider of dead-model does not answer at {base}" in err
    assert "TOKENWINDOW_MODELS_FILE" in err
