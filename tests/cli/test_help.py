"""Every command's help says what it needs running; ``--version`` prints the one version."""

from __future__ import annotations

import pytest

from tokenwindow import __version__
from tokenwindow.cli import main

NEEDS = {
    ("count",): "no Redis, broker or workers",
    ("models",): "no Redis, broker or workers",
    ("compress",): "needs the broker, Redis and running workers",
    ("demo",): "Needs Redis (REDIS_URL), the broker (BROKER_URL",
    ("sessions",): "Needs Redis at REDIS_URL",
    ("sessions", "list"): "Needs Redis at REDIS_URL",
    ("sessions", "show"): "Needs Redis at REDIS_URL",
    ("sessions", "transcript"): "Needs Redis at REDIS_URL",
    ("sessions", "delete"): "Needs Redis at REDIS_URL",
    ("metrics",): "Needs Redis at REDIS_URL",
}


def help_text(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", sorted(NEEDS), ids=" ".join)
def test_help_says_what_the_command_needs(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert NEEDS[command] in help_text(capsys, [*command, "--help"])


def test_top_level_help_lists_what_each_command_needs(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(capsys, ["--help"])
    assert "count and models run offline" in text
    assert "sessions and metrics read Redis (REDIS_URL)" in text
    for command in ("count", "models", "compress", "demo", "sessions", "metrics"):
        assert f" {command} " in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert help_text(capsys, ["--version"]) == f"tokenwindow {__version__}"
