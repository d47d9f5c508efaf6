"""``tokenwindow count``: the exact prompt token count of a text or a chat request."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tokenwindow.cli import EXIT_OK
from tokenwindow.counting import count_request
from tokenwindow.errors import InvalidInputError
from tokenwindow.settings import get_settings

DEFAULT_MODEL = "gpt-4o"
"""Counted against when neither ``--model`` nor ``TOKENWINDOW_DEFAULT_MODEL`` names one."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "count",
        help="count the prompt tokens of a text or a chat request (offline: needs nothing)",
        description=(
            "Count prompt tokens. INPUT is a file or '-' for stdin: a JSON message list or a "
            "request object with 'messages' (and optional 'tools') is counted as a chat "
            "request, anything else as plain text. Runs offline: no Redis, broker or workers."
        ),
    )
    parser.add_argument("input", nargs="?", metavar="INPUT", help="file to count, or '-'")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text", help="count this text")
    source.add_argument("--messages", metavar="FILE", help="JSON chat messages ('-' for stdin)")
    parser.add_argument("--tools", metavar="FILE", help="JSON tool definitions for the request")
    parser.add_argument("--model", help=f"model to count for (default: {DEFAULT_MODEL})")
    parser.add_argument("--json", action="store_true", help="print the details as JSON")
    parser.set_defaults(handler=run)


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read: {exc}") from None


def _load_json(path: str) -> Any:
    try:
        return json.loads(_read(path))
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path}: not valid JSON: {exc}") from None


def _as_request(data: Any) -> tuple[Any, Any] | None:
    """(messages, tools) when ``data`` looks like a message list or a request object."""
    if isinstance(data, dict) and "messages" in data:
        return data["messages"], data.get("tools", data.get("functions"))
    if isinstance(data, list) and data and all(isinstance(m, dict) and "role" in m for m in data):
        return data, None
    return None


def _from_json(data: Any, tools: Any) -> dict[str, Any]:
    request = _as_request(data)
    if request is None:  # not message-shaped: validation names the problem
        return {"messages": data, "tools": tools}
    return {"messages": request[0], "tools": tools or request[1]}


def _request(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for ``count_request`` from the command line."""
    tools = _load_json(args.tools) if args.tools else None
    given = [x for x in (args.input, args.text, args.messages) if x is not None]
    if len(given) != 1:
        raise InvalidInputError("input: give one of --text, --messages FILE, a file, or '-'")
    if args.text is not None:
        return {"text": args.text, "tools": tools}
    if args.messages is not None:
        return _from_json(_load_json(args.messages), tools)
    raw = _read(args.input)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {"text": raw, "tools": tools}
    if _as_request(data) is None:
        return {"text": raw, "tools": tools}
    return _from_json(data, tools)


def run(args: argparse.Namespace) -> int:
    model = args.model or get_settings().default_model or DEFAULT_MODEL
    details = count_request(model, **_request(args))
    print(json.dumps(details) if args.json else details["tokens"])
    return EXIT_OK
