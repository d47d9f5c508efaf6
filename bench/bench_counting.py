"""Token counting: cold speed against raw tiktoken and litellm, incremental appends, memory.

Every figure is measured in the same run as its baseline, best of several repetitions.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.report import Row
from tokenwindow.offline import prepare_offline_environment

MODEL = "gpt-4o"
ENCODING = "o200k_base"
SESSION_TOKENS = 1_000_000
TURN_TOKENS = 1_000


def locomo_messages(path: Path) -> list[dict[str, Any]]:
    """One LoCoMo conversation as chat messages, sessions in order."""
    data = json.loads(path.read_text(encoding="utf-8"))
    speakers = {data["speaker_a"]: "user", data["speaker_b"]: "assistant"}
    sessions = sorted(
        (int(m.group(1)), key)
        for key in data
        if (m := re.fullmatch(r"session_(\d+)", key)) and isinstance(data[key], list)
    )
    messages = []
    for _, key in sessions:
        for turn in data[key]:
            content = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                content += f" [shares image: {turn['blip_caption']}]"
            messages.append({"role": speakers[turn["speaker"]], "content": content})
    return messages


def best(reps: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved(
    reps: int, contestants: list[Callable[[Any], object]], inputs: list[Any]
) -> list[float]:
    """Best time of each contestant, taking turns within every repetition so that drift in
    machine load hits all of them alike. Each call gets its own input, and garbage left by one
    call is collected before the next starts its clock."""
    feed = iter(inputs)
    times: list[list[float]] = [[] for _ in contestants]
    for _ in range(reps):
        for fn, own in zip(contestants, times, strict=True):
            data = next(feed)
            gc.collect()
            start = time.perf_counter()
            fn(data)
            own.append(time.perf_counter() - start)
    return [min(own) for own in times]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace) -> list[Row]:
    prepare_offline_environment()
    from tokenwindow.counting import REPLY_PRIMING, TOKENS_PER_MESSAGE, TokenCounter, get_encoding

    reps = 3 if args.quick else 7
    conversations = [locomo_messages(p) for p in sorted(Path(args.data).glob("*.json"))]
    n_messages = sum(len(c) for c in conversations)
    encoding = get_encoding(ENCODING)
    rows = []

    rss_before = peak_rss_mb()
    ours_counts = [TokenCounter(ENCODING).count_messages(c) for c in conversations]  # type: ignore[arg-type]
    rss_after = peak_rss_mb()
    total = sum(ours_counts)
    rows.append(
        Row(
            "counting",
            "peak RSS, whole LoCoMo set",
            f"{rss_after:.0f} MB",
            f"{rss_before:.0f} MB before",
            f"+{rss_after - rss_before:.1f} MB",
            f"{len(conversations)} conversations, {n_messages} messages, {total} tokens",
        )
    )

    # Every call counts its own copy, marked so no cache (ours or litellm's) can hit; the copies
    # are made before any timing, so no contestant is charged for building them.
    copies = [
        [[{**m, "content": f"{m['content']} ~{i}"} for m in c] for c in conversations]
        for i in range(3 * reps + 1)
    ]

    def raw(convs: list[list[dict[str, Any]]]) -> list[int]:
        """Raw tiktoken doing the same encoding as a fresh counter: each message once, each
        role once per call."""
        roles: dict[str, int] = {}
        counts = []
        for c in convs:
            total = REPLY_PRIMING
            for m in c:
                role = roles.get(m["role"])
                if role is None:
                    role = roles[m["role"]] = len(encoding.encode_ordinary(m["role"]))
                total += TOKENS_PER_MESSAGE + role + len(encoding.encode_ordinary(m["content"]))
            counts.append(total)
        return counts

    def ours(convs: list[list[dict[str, Any]]]) -> list[int]:
        counter = TokenCounter(ENCODING)
        return [counter.count_messages(c) for c in convs]  # type: ignore[arg-type]

    import litellm

    def via_litellm(convs: list[list[dict[str, Any]]]) -> list[int]:
        return [int(litellm.token_counter(model=MODEL, messages=c)) for c in convs]

    # The check doubles as each contestant's one untimed warm-up.
    expected = ours(copies[0])
    same_raw = "identical" if raw(copies[0]) == expected else "DIFFERENT"
    same = "identical" if via_litellm(copies[0]) == expected else "DIFFERENT"
    t_raw, t_ours, t_litellm = interleaved(reps, [raw, ours, via_litellm], copies[1:])
    rows.append(
        Row(
            "counting",
            "cold, LoCoMo vs raw tiktoken",
            f"{t_ours * 1e3:.1f} ms",
            f"{t_raw * 1e3:.1f} ms",
            f"{t_raw / t_ours:.2f}x speed",
            f"goal >= 0.9x; counts {same_raw}",
        )
    )
    rows.append(
        Row(
            "counting",
            "cold, LoCoMo vs litellm.token_counter",
            f"{t_ours * 1e3:.1f} ms",
            f"{t_litellm * 1e3:.1f} ms",
            f"{t_litellm / t_ours:.1f}x faster",
            f"goal >= 3x; {MODEL} counts {same}",
        )
    )

    # A session of about a million tokens: LoCoMo turns, numbered so that none repeats.
    pool = [m for c in conversations for m in c]
    history: list[Any] = []
    tokens = 0
    while tokens < SESSION_TOKENS:
        m = pool[len(history) % len(pool)]
        history.append({"role": m["role"], "content": f"{m['content']} (#{len(history)})"})
        tokens += TOKENS_PER_MESSAGE + len(encoding.encode_ordinary(history[-1]["content"]))
    turn_text = " ".join(m["content"] for m in pool[:200])
    turn_text = encoding.decode(encoding.encode_ordinary(turn_text)[:TURN_TOKENS])
    turn: Any = {"role": "user", "content": turn_text}
    warm = TokenCounter(ENCODING)
    session_total = warm.count_messages(history)

    t_full = best(
        max(1, reps // 2), lambda: TokenCounter(ENCODING).count_messages([*history, turn])
    )

    def append() -> int:
        counter = TokenCounter(ENCODING)  # the turn is new to the cache, as in production
        return session_total + counter.count_message(turn)

    t_append = best(reps, append)
    assert append() == TokenCounter(ENCODING).count_messages([*history, turn])
    rows.append(
        Row(
            "counting",
            f"append {TURN_TOKENS:,}-token turn to {session_total:,}-token session",
            f"{t_append * 1e3:.3f} ms",
            f"{t_full * 1e3:.0f} ms recount",
            f"{t_full / t_append:,.0f}x faster",
            "goal >= 100x; stored total + new turn",
        )
    )
    t_warm = best(reps, lambda: warm.count_messages([*history, turn]))
    rows.append(
        Row(
            "counting",
            "resent whole history, warm cache",
            f"{t_warm * 1e3:.0f} ms",
            f"{t_full * 1e3:.0f} ms recount",
            f"{t_full / t_warm:.1f}x faster",
            f"{len(history):,} messages hashed, one encoded",
        )
    )
    return rows
