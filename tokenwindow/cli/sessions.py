"""``tokenwindow sessions``: list, inspect, read and delete sessions."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tokenwindow.cli import EXIT_OK, EXIT_PARTIAL, NEEDS_REDIS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sessions",
        help="list, show, read or delete sessions (needs Redis)",
        description=f"Read and delete sessions in Redis. {NEEDS_REDIS}",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="sessions by most recent activity (JSON lines)",
        description=f"Sessions by most recent activity, one JSON line each. {NEEDS_REDIS}",
    )
    listing.add_argument("--limit", type=int, default=100)
    for name, text in (
        ("show", "one session's counts and state (JSON)"),
        ("transcript", "the full raw transcript (JSON)"),
        ("delete", "remove everything stored for a session"),
    ):
        actions.add_parser(name, help=text, description=f"{text}. {NEEDS_REDIS}").add_argument(
            "session_id"
        )
    parser.set_defaults(handler=run)


def _print(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def run(args: argparse.Namespace) -> int:
    from tokenwindow.sync_client import SyncTokenManagementClient

    with SyncTokenManagementClient() as client:
        if args.action == "list":
            for listed in client.list_sessions(limit=args.limit):
                print(json.dumps(listed, ensure_ascii=False))
            return EXIT_OK
        if args.action == "show":
            session = client.get_session(args.session_id)
            if session is None:
                print(f"no session {args.session_id!r}")
                return EXIT_PARTIAL
            _print(session)
        elif args.action == "transcript":
            _print(client.get_transcript(args.session_id))
        else:
            deleted = client.delete_session(args.session_id)
            print("deleted" if deleted else f"no session {args.session_id!r}")
            return EXIT_OK if deleted else EXIT_PARTIAL
    return EXIT_OK
