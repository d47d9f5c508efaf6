"""Chaos runner: inject each fault into real workers on loopback and print what survived.

``python -m bench.chaos`` starts its own ``redis-server`` (persistence off) and fake provider,
runs every scenario of ``tests.chaos.scenarios`` at full size, and prints one row per fault:
turns sent, completed, failed with a clear error, lost, duplicated, and recovery time. The
worker-kill rows run again with RabbitMQ as the broker when it answers on ``--amqp-url``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import redis

from tests.chaos import scenarios
from tests.chaos.scenarios import Row
from tests.redis_server import RedisServer
from tests.topologies import RabbitNode

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def amqp_reachable(url: str) -> bool:
    parts = urlparse(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 2):
            return True
    except OSError:
        return False


def format_table(rows: list[Row]) -> str:
    header = ("fault", "broker", "sent", "done", "failed", "lost", "dup", "recovery s", "requests")
    lines = [
        (
            r.fault,
            r.broker,
            str(r.sent),
            str(r.completed),
            str(r.failed),
            str(r.lost),
            str(r.duplicated),
            "-" if r.recovery_s is None else f"{r.recovery_s:.1f}",
            str(r.requests),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def fmt(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(line) for line in lines]
    notes = [f"- {r.fault} ({r.broker}): {r.note}" for r in rows if r.note]
    problems = [f"- {r.fault} ({r.broker}): {p}" for r in rows for p in r.problems]
    if notes:
        out += ["", "Notes:", *notes]
    if problems:
        out += ["", "Problems:", *problems]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000, help="load: sessions")
    parser.add_argument("--turns", type=int, default=5, help="load: turns per session")
    parser.add_argument("--pause", type=float, default=30.0, help="seconds Redis is frozen")
    parser.add_argument("--amqp-url", default=DEFAULT_AMQP_URL)
    parser.add_argument("--no-amqp", action="store_true", help="skip the RabbitMQ rows")
    parser.add_argument("--only", default="", help="run scenarios whose name contains this")
    args = parser.parse_args(argv)

    amqp = None if args.no_amqp or not amqp_reachable(args.amqp_url) else args.amqp_url
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp, RedisServer() as server:
        base = Path(tmp)
        url = server.url(0)
        plan: list[tuple[str, Callable[[Path], Row | list[Row]]]] = []
        for broker in (None, amqp) if amqp else (None,):
            plan += [
                ("kill streaming", lambda d, b=broker: scenarios.kill_streaming(d, url, b)),
                ("kill summarizing", lambda d, b=broker: scenarios.kill_summarizing(d, url, b)),
                ("kill ingesting", lambda d, b=broker: scenarios.kill_ingesting(d, url, b)),
                (
                    "kill under load",
                    lambda d, b=broker: scenarios.kill_under_load(d, url, broker_url=b),
                ),
            ]
        plan.append(("provider faults", lambda d: scenarios.provider_faults(d, url)))
        plan += [
            ("redis restart", scenarios.redis_restart),
            ("redis pause", lambda d: scenarios.redis_pause(d, args.pause)),
            ("slow subscriber", scenarios.slow_subscriber),
            ("sentinel failover", scenarios.sentinel_failover),
        ]
        if RabbitNode.binary() is not None:
            plan.append(
                ("kill streaming quorum", lambda d: scenarios.kill_streaming_quorum(d, url))
            )
        plan += [
            (
                "load",
                lambda d: scenarios.load(d, url, sessions=args.sessions, turns=args.turns),
            ),
        ]
        for n, (name, run) in enumerate(plan):
            if args.only and args.only not in name:
                continue
            workdir = base / f"{n:02d}"
            workdir.mkdir()
            redis.Redis.from_url(url).flushall()
            print(f"running: {name}", file=sys.stderr, flush=True)
            try:
                done = run(workdir)
                rows += done if isinstance(done, list) else [done]
            except Exception as exc:  # one broken scenario must not hide the others' rows
                traceback.print_exc()
                rows.append(Row(name, note=f"scenario crashed: {type(exc).__name__}: {exc}"))
    if not amqp and not args.no_amqp:
        print(f"RabbitMQ not reachable at {args.amqp_url}: its rows are skipped", file=sys.stderr)
    print(format_table(rows))
    bad = [r for r in rows if r.lost or r.duplicated or r.problems or "crashed" in r.note]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
