"""``tokenwindow compress``: compress many long transcripts over the workers, or in process.

The distributed path sends ``tokenwindow.compress_transcript`` by name and reads results from
the result backend, like any producer. ``--local`` runs the service's strategies in this process:
it loads the runner the service distribution registers under the ``tokenwindow.runners`` entry
point group, so the client never imports worker code and a client-only install says what to add.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

from tokenwindow.bulk.driver import BulkRun, Runner
from tokenwindow.bulk.jobs import EXTRACTIVE, JobSpec
from tokenwindow.bulk.output import ResultLog
from tokenwindow.bulk.progress import Progress
from tokenwindow.bulk.remote import CeleryRunner
from tokenwindow.bulk.source import Source
from tokenwindow.bulk.tally import Tally
from tokenwindow.cli import EXIT_OK, EXIT_PARTIAL
from tokenwindow.cli.count import DEFAULT_MODEL
from tokenwindow.errors import ConfigurationError, InvalidInputError
from tokenwindow.models import get_registry
from tokenwindow.settings import Settings, StrategyName, get_settings
from tokenwindow.topology import celery_broker, celery_result_backend

EXIT_INTERRUPTED = 130
RUNNERS = "tokenwindow.runners"
"""Entry point group of in-process runners; the service registers ``local``."""

DESCRIPTION = """\
Compress long transcripts to a token budget, one task per transcript over the Celery workers
(at most --concurrency in flight): needs the broker, Redis and running workers. With --local
it compresses in this process: no broker, Redis or workers, but the service install.

INPUT is a JSONL file of {"id", "messages"} objects, a ShareGPT JSON file ("conversations" of
from/value turns), a LoCoMo conversation file, a folder of such .json/.jsonl files, or '-' for
JSONL on stdin. JSONL is streamed, so inputs of any size fit in memory.

OUT.jsonl gets one line per transcript: "id", "messages", "tokens_before", "tokens_after",
"strategy", or "id" and "error" ({"code", "message"}) when it failed. Lines come in the order
transcripts finish, not the input order: join on "id". Rerunning with the same output resumes:
ids already written are skipped, and a line torn by a killed run is dropped. A summary goes to
stderr; --report writes it as JSON.

Exit status: 0 all transcripts done, 1 some failed, 2 bad usage or unreadable input.
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "compress",
        help=(
            "compress many transcripts (JSONL, ShareGPT, LoCoMo) to a token budget "
            "(needs the broker, Redis and workers; --local needs none)"
        ),
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="file, folder, or '-'")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.jsonl")
    parser.add_argument("--model", help=f"model to count and fit for (default: {DEFAULT_MODEL})")
    parser.add_argument(
        "--strategy",
        choices=[s.value for s in StrategyName],
        help="compression strategy (default: DEFAULT_STRATEGY, else hybrid)",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--budget", type=_positive_int, help="tokens per transcript")
    target.add_argument("--ratio", type=_ratio, help="share of each transcript's own tokens")
    parser.add_argument(
        "--summarizer",
        default=EXTRACTIVE,
        metavar="extractive|MODEL",
        help="who writes summaries: the offline extractive summarizer (default) or a model",
    )
    parser.add_argument("--local", action="store_true", help="compress in this process")
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="tasks in flight (default: four per worker process answering)",
    )
    parser.add_argument("--report", type=Path, metavar="FILE", help="write the summary as JSON")
    parser.set_defaults(handler=run)


def _job_spec(args: argparse.Namespace, settings: Settings) -> JobSpec:
    """The job as asked; unknown models fail here, before any transcript is read."""
    model = args.model or settings.default_model or DEFAULT_MODEL
    registry = get_registry()
    registry.get(model)
    if args.summarizer != EXTRACTIVE:
        registry.get(args.summarizer)
    return JobSpec(
        model=model,
        strategy=args.strategy or settings.default_strategy.value,
        budget=args.budget,
        ratio=args.ratio,
        summarizer=args.summarizer,
    )


def _runner(args: argparse.Namespace, settings: Settings) -> Runner:
    if args.local:
        return _local_runner(settings)
    return CeleryRunner(
        celery_broker(settings).url,
        celery_result_backend(settings).url,
        salt=str(args.output.resolve()),
        capacity=args.concurrency,
        settings=settings,
    )


def _local_runner(settings: Settings) -> Runner:
    found = entry_points(group=RUNNERS, name="local")
    if not found:
        raise ConfigurationError(
            "--local compresses with the service's strategies, which this install lacks: "
            "install tokenwindow-service too (README, Install), or drop --local to use the workers"
        )
    runner: Runner = next(iter(found)).load()(settings)
    return runner


def _report(tally: Tally, path: Path | None) -> None:
    print(tally.text(), file=sys.stderr)
    if path is None:
        return
    try:
        path.write_text(json.dumps(tally.summary(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot write the report: {exc}") from None


def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    spec = _job_spec(args, settings)
    if args.output.is_dir():
        raise InvalidInputError(f"{args.output}: is a folder; give a file")
    source = Source(args.inputs)
    runner = _runner(args, settings)
    tally = Tally()
    log = ResultLog(args.output, tally.add)
    tally.resumed = log.resumed
    progress = Progress(tally, source.fraction)
    code = EXIT_OK
    try:
        BulkRun(spec, runner, log, tally, progress).run(source)
    except KeyboardInterrupt:
        progress.note("tokenwindow compress: interrupted; run again with the same output to resume")
        code = EXIT_INTERRUPTED
    finally:
        runner.close()
        log.close()
    _report(tally, args.report)
    if code == EXIT_OK and tally.failed:
        code = EXIT_PARTIAL
    return code
