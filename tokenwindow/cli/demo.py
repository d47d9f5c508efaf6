"""``tokenwindow demo``: a long conversation through the real pipeline, streamed live.

It plays a planning conversation whose turns each add a few hundred tokens, so the model's
window fills and compression has to happen; it prints every reply as it streams and every
compression event as it lands, then a table of the turns. It is a producer like any other: it
needs Redis, the broker and running workers, and says so in one line when one is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tokenwindow.errors import UnreachableError
from tokenwindow.events import EventType
from tokenwindow.models import OFFLINE_MODEL, get_registry
from tokenwindow.producer import TaskProducer
from tokenwindow.settings import Settings
from tokenwindow.topology import celery_broker
from tokenwindow.unreachable import hide_password

if TYPE_CHECKING:
    from tokenwindow.client import TokenManagementClient

PING_TIMEOUT_SECONDS = 2.0
TURN_TIMEOUT_SECONDS = 300.0
UNREACHABLE_CODES = frozenset(("provider_unavailable", "provider_timeout"))
"""Turn failures that mean the model's endpoint did not answer: the demo stops on them."""
MARK = "    ::"
"""Prefix of the lines that are not the conversation (compressions, failures)."""

TEAM = ("Ana", "Bruno", "Chen", "Dara", "Emeka", "Farah", "Goran", "Hana", "Ines", "Jonas")
TOPICS = (
    ("the storage migration", "March 14", "3.2 TB", "Postgres 16"),
    ("the mobile release", "April 2", "version 4.1", "the payments screen"),
    ("the on-call rota", "May 6", "eight engineers", "a two-week rotation"),
    ("the pricing change", "June 11", "12 percent", "annual plans"),
    ("the security audit", "July 21", "41 findings", "the SSO flow"),
    ("the data warehouse", "August 8", "90 days of events", "nightly batches"),
    ("the hiring plan", "September 3", "four roles", "two senior engineers"),
    ("the office move", "October 17", "level 5", "the new meeting rooms"),
    ("the customer summit", "November 9", "300 guests", "the keynote demo"),
    ("the budget review", "December 1", "1.8 million euros", "cloud spending"),
    ("the API deprecation", "January 20", "v1 endpoints", "the partner integrations"),
    ("the search rewrite", "February 12", "40 ms p99", "the ranking model"),
)


def demo_turns(count: int) -> list[str]:
    """Deterministic user turns full of names, dates and numbers worth remembering."""
    turns = []
    for i in range(count):
        topic, date, figure, detail = TOPICS[i % len(TOPICS)]
        owner, reviewer = TEAM[i % len(TEAM)], TEAM[(i + 3) % len(TEAM)]
        paragraph = (
            f"Next item: {topic}. {owner} owns it and {reviewer} reviews it. The deadline is "
            f"{date}, the key figure is {figure}, and the open question is {detail}. "
            f"{owner} said the risks are staffing, vendor lead times and test coverage; "
            f"{reviewer} wants a written plan with milestones, a rollback path and a budget. "
        )
        turns.append(paragraph * 4 + "Please summarise the decision and the next step.")
    return turns


DESCRIPTION = """\
Play a planning conversation whose turns fill the model's window, through the real pipeline:
each reply streams as it is generated, each compression is marked, and a table of the turns
ends the run.

Needs Redis (REDIS_URL), the broker (BROKER_URL, default REDIS_URL) and running workers:
`make run` starts them all and runs this demo. With no provider key it uses the built-in
offline model.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="a long conversation through the workers (needs Redis, the broker and workers)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="model to use (default: by available provider keys)")
    parser.add_argument("--turns", type=int, default=12, help="number of turns (default 12)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args.model, args.turns))


@dataclass
class TurnRow:
    """One line of the closing table."""

    number: int
    seconds: float = 0.0
    reply_chars: int = 0
    window_tokens: int = 0
    compressions: list[str] = field(default_factory=list)
    failed: str = ""


def _compression(event: dict[str, Any]) -> str:
    return (
        f"{event.get('strategy')} ({event.get('reason')}): "
        f"{event.get('tokens_before'):,} -> {event.get('tokens_after'):,} tokens"
        f"{', failsafe' if event.get('failsafe') else ''}"
    )


def _describe(event: dict[str, Any]) -> str:
    kind = event["type"]
    if kind == EventType.COMPRESSION_COMPLETED:
        return f"compressed: {_compression(event)}"
    if kind == EventType.COMPRESSION_STARTED:
        return (
            f"compressing: {event.get('strategy')} ({event.get('reason')}), "
            f"{event.get('tokens_before'):,} tokens"
        )
    return f"{kind}: {event.get('code', '')} {event.get('message', '')}".rstrip()


COMPRESSION_EVENTS = frozenset(
    (EventType.COMPRESSION_STARTED, EventType.COMPRESSION_COMPLETED, EventType.COMPRESSION_FAILED)
)


def _provider_unreachable(model: str, event: dict[str, Any]) -> UnreachableError:
    base = get_registry().get(model).api_base
    where = f" at {hide_password(base)}" if base else ""
    return UnreachableError(
        f"the provider of {model} does not answer{where} ({event.get('message')}): check the "
        "model's api_base in TOKENWINDOW_MODELS_FILE or the provider's key, or pick another "
        "with --model"
    )


class Player:
    """Plays the turns of one session, printing its events in stream order."""

    def __init__(self, client: TokenManagementClient, session_id: str, model: str) -> None:
        self.client = client
        self.session_id = session_id
        self.model = model
        self.cursor = "0"
        """The last stream entry seen: events between two turns (a background compression)
        show up in the next turn instead of being skipped."""

    async def play(self, row: TurnRow, text: str) -> None:
        """Submit one turn and print its events until it ends."""
        started = time.monotonic()
        turn_id = await self.client.submit_turn(
            self.session_id, [{"role": "user", "content": text}], self.model
        )
        at_line_start = False
        async for event in self.client.subscribe(
            self.session_id,
            from_id=self.cursor,
            stop_after_turn=False,
            timeout=TURN_TIMEOUT_SECONDS,
        ):
            self.cursor = event["id"]
            kind = event["type"]
            if kind == EventType.TOKEN and event["turn_id"] == turn_id:
                print(event["text"], end="", flush=True)
                row.reply_chars += len(event["text"])
                at_line_start = event["text"].endswith("\n")
            elif kind in COMPRESSION_EVENTS or kind == EventType.TURN_FAILED:
                print(("" if at_line_start else "\n") + f"{MARK} {_describe(event)}", flush=True)
                at_line_start = True
                if kind == EventType.COMPRESSION_COMPLETED:
                    row.compressions.append(_compression(event))
            if event["turn_id"] == turn_id and kind in (
                EventType.TURN_COMPLETED,
                EventType.TURN_FAILED,
            ):
                if kind == EventType.TURN_FAILED:
                    if event.get("code") in UNREACHABLE_CODES:
                        raise _provider_unreachable(self.model, event)
                    row.failed = str(event.get("code"))
                break
        if not at_line_start:
            print()
        row.seconds = time.monotonic() - started
        session = await self.client.get_session(self.session_id) or {}
        row.window_tokens = int(session.get("window_tokens") or 0)


def _check_workers(settings: Settings) -> None:
    """One line, not a five-minute wait, when no worker would serve the turns."""
    producer = TaskProducer.for_settings(settings)
    try:
        replies = producer.app.control.ping(timeout=PING_TIMEOUT_SECONDS)
    finally:
        producer.close()
    if not replies:
        raise UnreachableError(
            "no worker answers on the broker at "
            f"{hide_password(celery_broker(settings).url)}: start them (`make run`, or the "
            "Procfile's workers), or set BROKER_URL to theirs"
        )


def table(rows: list[TurnRow]) -> list[str]:
    """The closing table: one line per turn."""
    lines = [f"{'turn':>4}  {'seconds':>7}  {'reply chars':>11}  {'window after':>12}  compression"]
    for row in rows:
        what = "; ".join(row.compressions) or "-"
        if row.failed:
            what = f"FAILED ({row.failed}); {what}"
        lines.append(
            f"{row.number:>4}  {row.seconds:>7.1f}  {row.reply_chars:>11,}  "
            f"{row.window_tokens:>12,}  {what}"
        )
    return lines


async def _demo(model: str | None, turns: int) -> int:
    from tokenwindow.client import TokenManagementClient

    async with TokenManagementClient() as client:
        await asyncio.to_thread(_check_workers, client.settings)
        model = model or client.default_model()
        session_id = f"demo-{uuid.uuid4().hex[:8]}"
        if model == OFFLINE_MODEL:
            print(
                f"Model: {model} (built-in OFFLINE model: no provider key was found; its "
                "replies are extractive, not an LLM's)"
            )
        else:
            print(f"Model: {model}")
        print(f"Session: {session_id}  (lines starting with '{MARK.strip()}' are not the chat)")
        player = Player(client, session_id, model)
        rows = []
        for number, text in enumerate(demo_turns(turns), start=1):
            print(f"\n--- turn {number} ---\nyou: {text[:90]}...\n\nassistant: ", end="")
            rows.append(TurnRow(number))
            await player.play(rows[-1], text)
        session = await client.get_session(session_id) or {}
        transcript = await client.get_transcript(session_id)
        metrics = await client.metrics()
    failures = sum(1 for row in rows if row.failed)
    print("\nSummary")
    print("\n".join("  " + line for line in table(rows)))
    print(
        f"\n  {len(transcript)} messages, {session.get('total_tokens'):,} tokens kept in the "
        f"transcript; working window {session.get('window_tokens'):,} tokens after "
        f"{session.get('compressions')} compressions"
    )
    print(f"  tokens saved (all sessions): {metrics['tokens_saved']['total']:,}")
    print(f"  failed turns: {failures}")
    return 0 if failures == 0 else 1
