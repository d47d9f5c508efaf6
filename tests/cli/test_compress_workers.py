"""``tokenwindow compress`` over real worker processes: every format, failures, the summary."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.corpus import check_output, read_output, write_jsonl, write_locomo, write_sharegpt
from tests.harness import WorkerProcess
from tokenwindow.cli import EXIT_OK, EXIT_PARTIAL, main

BUDGET = 500


def test_every_format_through_the_workers(worker: WorkerProcess, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    ids = set(write_jsonl(folder / "chats.jsonl", 20))
    ids |= set(write_sharegpt(folder / "share.json", 4))
    ids |= {write_locomo(folder / f"conv-{n}.json", f"conv-{n}", seed=n) for n in (1, 2, 3)}
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    argv = ["compress", str(folder), "-o", str(out), "--budget", str(BUDGET), "--concurrency", "3"]
    assert main([*argv, "--report", str(report)]) == EXIT_OK
    lines = read_output(out)
    assert sorted(line["id"] for line in lines) == sorted(ids)
    check_output(lines, json.loads(report.read_text()), budget=BUDGET)
    assert {line["strategy"] for line in lines} == {"hybrid"}


def test_failures_come_back_as_lines_and_the_batch_goes_on(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    source = tmp_path / "chats.jsonl"
    ids = write_jsonl(source, 5, turns=6)
    with source.open("a") as f:
        f.write(json.dumps({"id": "tool-orphan", "messages": [{"role": "tool", "content": "x"}]}))
        f.write("\n")
    out, report = tmp_path / "out.jsonl", tmp_path / "report.json"
    argv = ["compress", str(source), "-o", str(out), "--ratio", "0.5", "--report", str(report)]
    assert main([*argv, "--strategy", "sliding_window"]) == EXIT_PARTIAL
    lines = read_output(out)
    assert sorted(line["id"] for line in lines) == sorted([*ids, "tool-orphan"])
    failed = [line for line in lines if "error" in line]
    assert [line["id"] for line in failed] == ["tool-orphan"]
    check_output(lines, json.loads(report.read_text()), ratio=0.5)
