"""``tokenwindow models``: every model the service knows, with its windows and tokenizer."""

from __future__ import annotations

import argparse
import json

from tokenwindow.cli import EXIT_OK
from tokenwindow.models import ModelSpec, get_registry

HEADERS = ("MODEL", "PROVIDER", "INPUT", "OUTPUT", "TOKENIZER", "COUNT")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list known models with their windows and tokenizers (offline: needs nothing)",
        description=(
            "List every known model: built-ins, litellm's map and the models file "
            "(TOKENWINDOW_MODELS_FILE). Runs offline: no Redis, broker or workers."
        ),
    )
    parser.add_argument("pattern", nargs="?", help="only models whose name contains this")
    parser.add_argument("--provider", help="only this provider's models")
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.set_defaults(handler=run)


def _row(spec: ModelSpec) -> tuple[str, ...]:
    return (
        spec.name,
        spec.provider,
        f"{spec.max_input_tokens:,}",
        f"{spec.max_output_tokens:,}",
        spec.encoding,
        "exact" if spec.exact else "estimate",
    )


def run(args: argparse.Namespace) -> int:
    specs = [
        s
        for s in get_registry().all()
        if (not args.pattern or args.pattern.lower() in s.name.lower())
        and (not args.provider or s.provider == args.provider)
    ]
    if args.json:
        print(json.dumps([s.public_dict() for s in specs], indent=2))
        return EXIT_OK
    rows = [HEADERS, *(_row(s) for s in specs)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK
