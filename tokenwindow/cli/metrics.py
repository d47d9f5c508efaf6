"""``tokenwindow metrics``: the domain metrics shared by all workers, as JSON."""

from __future__ import annotations

import argparse
import json

from tokenwindow.cli import EXIT_OK, NEEDS_REDIS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="compressions, tokens saved, crashes prevented, errors (JSON; needs Redis)",
        description=f"The domain metrics every worker shares, as JSON. {NEEDS_REDIS}",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tokenwindow.sync_client import SyncTokenManagementClient

    with SyncTokenManagementClient() as client:
        print(json.dumps(client.metrics(), indent=2))
    return EXIT_OK
