"""Generated agent traces whose tool outputs hold facts that later user turns ask about.

Deterministic from a seed. Each task is a user turn, one to three rounds of tool calls whose
results are JSON lines of records (about 500 tokens each), and an assistant reply that restates
two facts of what it read. Later user turns ask for a fact of an earlier result: half of them
one the assistant restated, half one only the tool output holds. Every fact value is a unique
word, so "can the model still see it" is a word lookup in the compressed context.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from tokenwindow.messages import Message

TOOLS: dict[str, tuple[str, ...]] = {
    "lookup_shipments": ("carrier", "warehouse", "dock", "seal"),
    "search_tickets": ("assignee", "queue", "tag", "build"),
    "read_inventory": ("bin", "supplier", "lot", "batch"),
}
SYLLABLES = ("ka", "zo", "mi", "tu", "re", "vo", "xi", "pa", "lu", "qe")


@dataclass(frozen=True)
class Fact:
    record: str
    field: str
    value: str
    restated: bool


@dataclass(frozen=True)
class Reference:
    """A user turn at ``index`` asking for ``fact``, which only earlier messages hold."""

    index: int
    fact: Fact


@dataclass(frozen=True)
class AgentTrace:
    messages: list[Message]
    references: list[Reference]


class _Values:
    """Unique fact values: a syllable pair and a running number, one word each."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.count = 1000

    def __call__(self) -> str:
        self.count += self.rng.randint(1, 9)
        return f"{self.rng.choice(SYLLABLES)}{self.rng.choice(SYLLABLES)}{self.count}"


def _tool_round(
    rng: random.Random, values: _Values, call_id: str, task: int
) -> tuple[list[Message], list[Fact]]:
    tool = rng.choice(sorted(TOOLS))
    fields = TOOLS[tool]
    facts, lines = [], []
    for _ in range(rng.randint(12, 24)):
        record = f"R{values.count + rng.randint(0, 99_999) % 97}-{task}-{len(lines)}"
        row = {"id": record, **{f: values() for f in fields}, "status": rng.choice(("ok", "late"))}
        facts += [Fact(record, f, str(row[f]), False) for f in fields]
        lines.append(json.dumps(row))
    arguments = json.dumps({"batch": task, "page": rng.randint(1, 9)})
    call = {"id": call_id, "type": "function", "function": {"name": tool, "arguments": arguments}}
    messages: list[Message] = [
        {"role": "assistant", "content": None, "tool_calls": [call]},  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call_id, "content": "\n".join(lines)},
    ]
    return messages, facts


def _question(rng: random.Random, facts: list[Fact]) -> Fact | None:
    restated = rng.random() < 0.5
    pool = [f for f in facts if f.restated == restated] or facts
    return rng.choice(pool) if pool else None


def agent_trace(seed: int, tasks: int = 14) -> AgentTrace:
    """One agent session of ``tasks`` user turns; the same seed gives the same trace."""
    rng = random.Random(seed)
    values = _Values(rng)
    messages: list[Message] = [
        {"role": "system", "content": "You are an operations agent. Use the tools; be exact."}
    ]
    earlier: list[Fact] = []
    references: list[Reference] = []
    calls = 0
    for task in range(tasks):
        asked = _question(rng, earlier) if task >= 2 and rng.random() < 0.7 else None
        request = f"Check batch {task} and report anything late."
        if asked is not None:
            earlier.remove(asked)
            request = f"Going back to {asked.record}: what was its {asked.field}? Then: {request}"
            references.append(Reference(len(messages), asked))
        messages.append({"role": "user", "content": request})
        found: list[Fact] = []
        for _ in range(rng.randint(1, 3)):
            calls += 1
            round_messages, facts = _tool_round(rng, values, f"call_{calls}", task)
            messages += round_messages
            found += facts
        told = rng.sample(found, 2)
        reply = [f"Batch {task} checked."]
        if asked is not None:
            reply.append(f"The {asked.field} of {asked.record} was {asked.value}.")
        reply += [f"{f.record} has {f.field} {f.value}." for f in told]
        messages.append({"role": "assistant", "content": " ".join(reply)})
        earlier += [Fact(f.record, f.field, f.value, f in told) for f in found]
    return AgentTrace(messages, references)
