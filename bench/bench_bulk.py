"""Bulk compression throughput and the CLI's peak memory.

Throughput: the LoCoMo conversations repeated into a few hundred transcripts, compressed to a
quarter of their tokens by ``tokenwindow compress`` with ``--local`` (the baseline), then over
one and two worker processes; the sliding window and hybrid with the extractive summarizer. The
figures are the CLI's own report (transcripts/s, tokens/s of input). Memory: the CLI's peak RSS
on a large generated JSONL against the same command on one transcript, measured as a child of a
fresh interpreter so no earlier child's peak counts. Uses Redis database 13.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from bench.report import Row
from bench.stack import BENCH_REDIS_URL
from tests.forkserver import ROOT
from tests.harness import WorkerProcess
from tokenwindow.transcripts import Transcript, read_path

TRANSCRIPTS, QUICK_TRANSCRIPTS = 300, 60
LARGE_BYTES, QUICK_LARGE_BYTES = 1 << 30, 32 << 20
STRATEGIES = ("sliding_window", "hybrid")
RATIO = "0.25"
MAXRSS = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _write_corpus(data: Path, path: Path, *, count: int | None = None, size: int = 0) -> int:
    """JSONL of the LoCoMo transcripts repeated ``count`` times or up to ``size`` bytes."""
    lines = [item.messages for item in read_path(data) if isinstance(item, Transcript)]
    written = n = 0
    with path.open("w", encoding="utf-8") as f:
        while (count is not None and n < count) or (count is None and written < size):
            line = json.dumps({"id": f"t{n}", "messages": lines[n % len(lines)]}) + "\n"
            written += f.write(line)
            n += 1
    return n


def _compress(source: Path, folder: Path, strategy: str, local: bool) -> dict[str, float]:
    """Run the CLI; its report."""
    out, report = folder / f"{strategy}-{local}.jsonl", folder / "report.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "tokenwindow.cli", "compress", str(source), "-o", str(out)]
    command += ["--ratio", RATIO, "--strategy", strategy, "--report", str(report)]
    env = {**os.environ, "REDIS_URL": BENCH_REDIS_URL}
    subprocess.run(
        [*command, *(["--local"] if local else [])],
        check=True,
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    figures: dict[str, float] = json.loads(report.read_text())
    return figures


@contextmanager
def _worker(processes: int, folder: Path) -> Iterator[None]:
    redis.Redis.from_url(BENCH_REDIS_URL).flushdb()
    log = folder / f"worker-{processes}.log"
    worker = WorkerProcess({"REDIS_URL": BENCH_REDIS_URL}, concurrency=processes, log_path=log)
    worker.start()
    try:
        yield
    finally:
        worker.stop()


def _rate(figures: dict[str, float]) -> str:
    return (
        f"{figures['transcripts_per_second']:.1f} tr/s, "
        f"{figures['tokens_per_second'] / 1e3:.0f}k tok/s"
    )


def _throughput(args: argparse.Namespace, folder: Path) -> list[Row]:
    source = folder / "corpus.jsonl"
    count = _write_corpus(args.data, source, count=QUICK_TRANSCRIPTS if args.quick else TRANSCRIPTS)
    local = {s: _compress(source, folder, s, local=True) for s in STRATEGIES}
    workers: dict[tuple[str, int], dict[str, float]] = {}
    for processes in (1, 2):
        with _worker(processes, folder):
            for strategy in STRATEGIES:
                workers[strategy, processes] = _compress(source, folder, strategy, local=False)
    rows = []
    for strategy in STRATEGIES:
        base = local[strategy]
        for processes in (1, 2):
            ours = workers[strategy, processes]
            ratio = ours["transcripts_per_second"] / base["transcripts_per_second"]
            rows.append(
                Row(
                    "bulk",
                    f"{strategy}, {processes} worker proc vs --local",
                    _rate(ours),
                    _rate(base),
                    f"{ratio:.2f}x",
                    f"{count} transcripts",
                )
            )
        one, two = workers[strategy, 1], workers[strategy, 2]
        scaling = two["transcripts_per_second"] / one["transcripts_per_second"]
        rows.append(
            Row(
                "bulk",
                f"{strategy}, 2 worker procs vs 1",
                _rate(two),
                _rate(one),
                f"{scaling:.2f}x",
                f"{os.cpu_count()} CPUs",
            )
        )
    return rows


def _peak_rss_kib(source: Path, folder: Path) -> int:
    out = folder / "large-out.jsonl"
    out.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "tokenwindow.cli",
        "compress",
        str(source),
        "-o",
        str(out),
        "--local",
        "--strategy",
        "sliding_window",
        "--ratio",
        RATIO,
    ]
    result = subprocess.run(
        [sys.executable, "-c", MAXRSS, *command],
        check=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return int(result.stdout.strip())


def _memory(args: argparse.Namespace, folder: Path) -> Row:
    small, large = folder / "one.jsonl", folder / "large.jsonl"
    _write_corpus(args.data, small, count=1)
    size = QUICK_LARGE_BYTES if args.quick else LARGE_BYTES
    _write_corpus(args.data, large, size=size)
    base, ours = _peak_rss_kib(small, folder), _peak_rss_kib(large, folder)
    mib = large.stat().st_size / (1 << 20)
    return Row(
        "bulk",
        f"CLI peak RSS, {mib:,.0f} MiB JSONL vs 1 transcript",
        f"{ours / 1024:.0f} MiB",
        f"{base / 1024:.0f} MiB",
        f"{ours / base:.2f}x",
        "--local sliding_window",
    )


def run(args: argparse.Namespace) -> list[Row]:
    """Throughput rows per strategy and worker count, then the memory row."""
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        folder = Path(tmp)
        return [*_throughput(args, folder), _memory(args, folder)]
