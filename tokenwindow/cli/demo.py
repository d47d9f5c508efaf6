"""``tokenwindow demo``: a long conversation through the real pipeline, streamed live.

It plays a planning conversation whose turns each add a few hundred tokens, so the model's
window fills and compression has to happen; it prints every reply as it streams and every
compression event as it lands, then a short summary.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from tokenwindow.events import EventType
from tokenwindow.models import OFFLINE_MODEL

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


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="run a long conversation through the workers")
    parser.add_argument("--model", help="model to use (default: by available provider keys)")
    parser.add_argument("--turns", type=int, default=12, help="number of turns (default 12)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_demo(args.model, args.turns))


def _describe(event: dict[str, Any]) -> str:
    kind = event["type"]
    if kind == EventType.COMPRESSION_COMPLETED:
        return (
            f"[compression] {event.get('strategy')} ({event.get('reason')}): "
            f"{event.get('tokens_before')} -> {event.get('tokens_after')} tokens"
            f"{' (failsafe)' if event.get('failsafe') else ''}"
        )
    if kind == EventType.COMPRESSION_STARTED:
        return (
            f"[compression] started: {event.get('strategy')}, {event.get('tokens_before')} tokens"
        )
    return f"[{kind}] {event.get('code', '')} {event.get('message', '')}".rstrip()


COMPRESSION_EVENTS = frozenset(
    (EventType.COMPRESSION_STARTED, EventType.COMPRESSION_COMPLETED, EventType.COMPRESSION_FAILED)
)


async def _play_turn(client: Any, session_id: str, text: str, model: str) -> int:
    """Submit one turn, print its events in stream order until it ends; 1 if it failed."""
    start = await client.last_event_id(session_id)
    turn_id = await client.submit_turn(session_id, [{"role": "user", "content": text}], model)
    at_line_start = False
    async for event in client.subscribe(
        session_id, from_id=start, stop_after_turn=False, timeout=300
    ):
        kind = event["type"]
        if kind == EventType.TOKEN and event["turn_id"] == turn_id:
            print(event["text"], end="", flush=True)
            at_line_start = event["text"].endswith("\n")
        elif kind in COMPRESSION_EVENTS or kind == EventType.TURN_FAILED:
            print(("" if at_line_start else "\n") + f"    {_describe(event)}", flush=True)
            at_line_start = True
        if event["turn_id"] == turn_id and kind in (
            EventType.TURN_COMPLETED,
            EventType.TURN_FAILED,
        ):
            print()
            return 0 if kind == EventType.TURN_COMPLETED else 1
    return 1


async def _demo(model: str | None, turns: int) -> int:
    from tokenwindow.client import TokenManagementClient

    async with TokenManagementClient() as client:
        model = model or client.default_model()
        session_id = f"demo-{uuid.uuid4().hex[:8]}"
        if model == OFFLINE_MODEL:
            print(
                f"Model: {model} (built-in OFFLINE model: no provider key was found; its "
                "replies are extractive, not an LLM's)"
            )
        else:
            print(f"Model: {model}")
        print(f"Session: {session_id}\n")
        started = time.monotonic()
        failures = 0
        for number, text in enumerate(demo_turns(turns), start=1):
            print(f"\n> turn {number}: {text[:90]}...\n< ", end="", flush=True)
            failures += await _play_turn(client, session_id, text, model)
        session = await client.get_session(session_id) or {}
        transcript = await client.get_transcript(session_id)
        metrics = await client.metrics()
        print("\nSummary")
        print(f"  turns: {turns} in {time.monotonic() - started:.1f} s")
        print(
            f"  transcript: {len(transcript)} messages, {session.get('total_tokens')} tokens "
            "(kept in full)"
        )
        print(
            f"  working window now: {session.get('window_tokens')} tokens, "
            f"{session.get('compressions')} compressions"
        )
        print(f"  tokens saved (all sessions): {metrics['tokens_saved']['total']}")
        print(f"  failed turns: {failures}")
    return 0 if failures == 0 else 1
