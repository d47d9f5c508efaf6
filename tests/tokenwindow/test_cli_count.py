"""``tokenwindow count`` and ``tokenwindow models`` through the real entry point."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tokenwindow.cli import EXIT_OK, EXIT_USAGE, main

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Count me.", "name": "ann"},
]


@pytest.fixture
def convo(tmp_path: Path) -> Path:
    path = tmp_path / "convo.json"
    path.write_text(json.dumps(MESSAGES), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_messages_file_prints_the_count_alone(
    capsys: pytest.CaptureFixture[str], convo: Path
) -> None:
    # 3 + system(1) + 4, 3 + user(1) + 3 + name 1 + 1, priming 3
    assert run(capsys, "count", "--model", "gpt-4o", "--messages", str(convo)) == (
        EXIT_OK,
        "20\n",
        "",
    )


def test_json_details(capsys: pytest.CaptureFixture[str], convo: Path) -> None:
    code, out, _ = run(capsys, "count", "--model", "claude-3-5-sonnet", str(convo), "--json")
    details = json.loads(out)
    assert code == EXIT_OK
    assert details["tokens"] == 20
    assert details["exact"] is False
    assert details["method"] == "estimate:o200k_base"
    assert (details["max_input_tokens"], details["max_output_tokens"]) == (200_000, 8_192)


def test_text_file_and_stdin(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello world", encoding="utf-8")
    assert run(capsys, "count", "--model", "gpt-4", str(path))[1] == "2\n"
    assert run(capsys, "count", "--model", "gpt-4", "--text", "hello world")[1] == "2\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"messages": MESSAGES})))
    assert run(capsys, "count", "--model", "gpt-4o", "-")[1] == "20\n"


def test_tools_file_adds_definitions(capsys: pytest.CaptureFixture[str], convo: Path) -> None:
    tools = convo.parent / "tools.json"
    tools.write_text(json.dumps([{"type": "function", "function": {"name": "f"}}]))
    out = run(capsys, "count", "--model", "gpt-4o", str(convo), "--tools", str(tools))[1]
    assert int(out) > 20


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["count", "--model", "gpt-4oo", "--text", "x"], "unknown model 'gpt-4oo'"),
        (["count", "--text", ""], "text: must not be empty"),
        (["count"], "give one of --text"),
        (["count", "/nonexistent/convo.json"], "cannot read"),
    ],
)
def test_errors_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (EXIT_USAGE, "")
    assert needle in err


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([{"content": "x"}], "messages[0].role: is missing"),
        ([{"role": "user", "content": ["x"]}], "messages[0].content[0]"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role: must be one of"),
        ([], "messages: must not be empty"),
        ({"turns": []}, "messages: must be a list"),
    ],
)
def test_malformed_messages_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, messages: object, needle: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(messages), encoding="utf-8")
    code, _, err = run(capsys, "count", "--messages", str(path))
    assert code == EXIT_USAGE
    assert needle in err


def test_invalid_json_names_the_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("[{", encoding="utf-8")
    code, _, err = run(capsys, "count", "--messages", str(path))
    assert code == EXIT_USAGE
    assert "broken.json: not valid JSON" in err


def test_models_lists_windows_and_tokenizers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "gpt-4o")
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert code == EXIT_OK
    assert lines["gpt-4o"][1:] == ["openai", "128,000", "4,096", "o200k_base", "exact"]


def test_models_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "models", "--json", "--provider", "gemini")
    specs = {s["name"]: s for s in json.loads(out)}
    assert code == EXIT_OK
    assert specs["gemini-1.5-pro"]["max_input_tokens"] == 1_000_000
    assert specs["gemini-1.5-pro"]["exact"] is False
    assert "api_key" not in specs["gemini-1.5-pro"]
    assert {s["provider"] for s in specs.values()} == {"gemini"}
