"""Generated transcripts in every input format, and an independent check of the output.

The token check uses tiktoken directly with OpenAI's published per-message rule, not the
project's counter, so a counting bug cannot hide a budget overrun.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import tiktoken

from tokenwindow.offline import prepare_offline_environment

NAMES = ("Ana", "Bruno", "Chen", "Dara", "Emeka", "Farah")
WORDS = [
    "budget",
    "deadline",
    "release",
    "migration",
    "vendor",
    "rollback",
    "review",
    "milestone",
    "staffing",
    "audit",
    "Paris",
    "Lisbon",
    "March",
    "April",
    "invoice",
    "contract",
    "launch",
    "keynote",
    "pricing",
    "roadmap",
]


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "."


def messages(rng: random.Random, turns: int) -> list[dict[str, str]]:
    convo = [{"role": "system", "content": "You are a careful planning assistant."}]
    for k in range(turns):
        role = "user" if k % 2 == 0 else "assistant"
        convo.append({"role": role, "content": sentence(rng, rng.randint(20, 60))})
    return convo


def write_jsonl(path: Path, count: int, *, turns: int = 30, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    ids = [f"{path.stem}-{i}" for i in range(count)]
    with path.open("w", encoding="utf-8") as f:
        for transcript_id in ids:
            f.write(json.dumps({"id": transcript_id, "messages": messages(rng, turns)}) + "\n")
    return ids


def write_sharegpt(path: Path, count: int, *, seed: int = 2) -> list[str]:
    rng = random.Random(seed)
    ids = [f"share-{i}" for i in range(count)]
    data = [
        {
            "id": transcript_id,
            "conversations": [
                {"from": "human" if k % 2 == 0 else "gpt", "value": sentence(rng, 40)}
                for k in range(24)
            ],
        }
        for transcript_id in ids
    ]
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return ids


def write_locomo(path: Path, sample_id: str, *, sessions: int = 3, seed: int = 3) -> str:
    rng = random.Random(seed)
    a, b = rng.sample(NAMES, 2)
    conversation: dict[str, Any] = {"speaker_a": a, "speaker_b": b}
    for s in range(1, sessions + 1):
        conversation[f"session_{s}_date_time"] = f"1:{s:02d} pm on {s} May, 2023"
        conversation[f"session_{s}"] = [
            {"speaker": (a, b)[k % 2], "dia_id": f"D{s}:{k + 1}", "text": sentence(rng, 30)}
            | ({"blip_caption": "a photo of a dog"} if k == 3 else {})
            for k in range(16)
        ]
    path.write_text(json.dumps({"sample_id": sample_id, "conversation": conversation}))
    return sample_id


def count_messages(messages: list[dict[str, Any]]) -> int:
    """OpenAI's rule for gpt-4o: 3 per message, role, content, name + 1, and 3 to prime."""
    prepare_offline_environment()
    encoding = tiktoken.get_encoding("o200k_base")
    total = 3
    for message in messages:
        total += 3 + len(encoding.encode(message["role"]))
        total += len(encoding.encode(message["content"]))
        if "name" in message:
            total += 1 + len(encoding.encode(message["name"]))
    return total


def output_ids(path: Path) -> list[str]:
    """Ids of the complete lines of an output file, torn last line aside."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    complete = [line for line in text.splitlines(keepends=True) if line.endswith("\n")]
    return [json.loads(line)["id"] for line in complete]


def read_output(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def check_output(
    lines: list[dict[str, Any]],
    report: dict[str, Any],
    *,
    budget: int | None = None,
    ratio: float | None = None,
) -> None:
    """Every compressed transcript fits its budget; the report's figures are the lines' sums."""
    done = [line for line in lines if "error" not in line]
    for line in done:
        limit = budget if budget is not None else int(line["tokens_before"] * (ratio or 0))
        assert count_messages(line["messages"]) == line["tokens_after"] <= limit, line["id"]
    assert report["transcripts"] == len(lines)
    assert report["done"] == len(done)
    assert report["failed"] == len(lines) - len(done)
    assert report["tokens_before"] == sum(line["tokens_before"] for line in done)
    assert report["tokens_after"] == sum(line["tokens_after"] for line in done)
