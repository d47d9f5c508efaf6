"""``tokenwindow compress --local``: every input format, failures, resuming, and bad usage."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.corpus import (
    check_output,
    count_messages,
    read_output,
    write_jsonl,
    write_locomo,
    write_sharegpt,
)
from tokenwindow.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main

BUDGET = 400


def compress(tmp_path: Path, *argv: str) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """Run the command in process; the exit code, the output lines and the JSON report."""
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    code = main(["compress", *argv, "-o", str(out), "--report", str(report), "--local"])
    return code, read_output(out), json.loads(report.read_text())


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, set[str]]:
    """A folder with a JSONL file, a ShareGPT file and two LoCoMo files."""
    folder = tmp_path / "in"
    folder.mkdir()
    ids = set(write_jsonl(folder / "chats.jsonl", 6))
    ids |= set(write_sharegpt(folder / "share.json", 3))
    ids |= {write_locomo(folder / f"conv-{n}.json", f"conv-{n}", seed=n) for n in (1, 2)}
    return folder, ids


def test_every_format_fits_the_budget_and_the_summary_matches(
    tmp_path: Path, inputs: tuple[Path, set[str]]
) -> None:
    folder, ids = inputs
    code, lines, report = compress(tmp_path, str(folder), "--budget", str(BUDGET))
    assert code == EXIT_OK
    assert {line["id"] for line in lines} == ids and len(lines) == len(ids)
    check_output(lines, report, budget=BUDGET)
    assert all(line["tokens_after"] < line["tokens_before"] for line in lines)


def test_ratio_is_a_share_of_each_transcripts_own_count(tmp_path: Path) -> None:
    source = tmp_path / "chats.jsonl"
    originals = {}
    write_jsonl(source, 4)
    for line in source.read_text().splitlines():
        item = json.loads(line)
        originals[item["id"]] = count_messages(item["messages"])
    code, lines, report = compress(
        tmp_path, str(source), "--ratio", "0.3", "--strategy", "sliding_window"
    )
    assert code == EXIT_OK
    assert {line["id"]: line["tokens_before"] for line in lines} == originals
    check_output(lines, report, ratio=0.3)


def test_stdin_jsonl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "chats.jsonl"
    ids = write_jsonl(source, 3)
    monkeypatch.setattr("sys.stdin", io.StringIO(source.read_text()))
    code, lines, report = compress(tmp_path, "-", "--budget", str(BUDGET))
    assert code == EXIT_OK
    assert sorted(line["id"] for line in lines) == sorted(ids)
    check_output(lines, report, budget=BUDGET)


def test_a_bad_transcript_is_reported_and_the_batch_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "chats.jsonl"
    ids = write_jsonl(source, 3)
    with source.open("a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"id": "bad-role", "messages": [{"role": "x", "content": "hi"}]}))
        f.write("\n" + json.dumps({"id": ids[0], "messages": []}) + "\n")
    code, lines, report = compress(tmp_path, str(source), "--budget", str(BUDGET))
    assert code == EXIT_PARTIAL
    errors = {line["id"]: line["error"] for line in lines if "error" in line}
    assert set(errors) == {f"{source}:4", "bad-role"}
    assert "role" in errors["bad-role"]["message"]
    assert len(lines) == len(ids) + 2  # the duplicate id is skipped, not written twice
    assert report["duplicates"] == 1
    check_output(lines, report, budget=BUDGET)
    assert "bad-role: invalid_input" in capsys.readouterr().err


def test_rerun_skips_written_ids_and_drops_a_torn_last_line(tmp_path: Path) -> None:
    source = tmp_path / "chats.jsonl"
    ids = write_jsonl(source, 5)
    compress(tmp_path, str(source), "--budget", str(BUDGET))
    out = tmp_path / "out.jsonl"
    whole = out.read_bytes()
    out.write_bytes(whole[: whole.rindex(b"\n", 0, -1) + 40])  # last line cut mid-way
    code, lines, report = compress(tmp_path, str(source), "--budget", str(BUDGET))
    assert code == EXIT_OK
    assert sorted(line["id"] for line in lines) == sorted(ids)
    assert (report["resumed"], report["processed"]) == (4, 1)
    check_output(lines, report, budget=BUDGET)


def test_a_damaged_line_before_the_end_stops_the_run(tmp_path: Path) -> None:
    source = tmp_path / "chats.jsonl"
    write_jsonl(source, 2)
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a", "er\n{"id": "b", "error": {}}\n')
    code = main(["compress", str(source), "-o", str(out), "--budget", "100", "--local"])
    assert code == EXIT_USAGE


@pytest.mark.parametrize(
    "argv",
    [
        ["missing.jsonl", "--budget", "100"],
        ["IN", "--budget", "100", "--model", "no-such-model"],
        ["IN", "--budget", "100", "--summarizer", "no-such-model"],
    ],
)
def test_bad_usage_exits_2_and_writes_nothing(tmp_path: Path, argv: list[str]) -> None:
    source = tmp_path / "chats.jsonl"
    write_jsonl(source, 1)
    argv = [
        str(source) if a == "IN" else str(tmp_path / a) if a.endswith(".jsonl") else a for a in argv
    ]
    out = tmp_path / "out.jsonl"
    assert main(["compress", *argv, "-o", str(out), "--local"]) == EXIT_USAGE
    assert not out.exists()


@pytest.mark.parametrize("argv", [["--ratio", "0"], [], ["--budget", "10", "--ratio", "0.5"]])
def test_the_budget_must_be_given_once_and_positive(tmp_path: Path, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["compress", str(tmp_path), "-o", str(tmp_path / "out.jsonl"), *argv])
    assert exited.value.code == EXIT_USAGE
