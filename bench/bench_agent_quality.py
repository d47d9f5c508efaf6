"""Tool-result clearing on generated agent traces: which earlier facts the model can still see.

At every user turn that asks for a fact of an earlier tool result, the history up to that turn
is compressed to a share of its tokens, and the fact counts as visible when its value (a unique
word) is anywhere in the compressed context. Clearing (the default keep-3 policy) in front of
each strategy sits beside the strategies alone; the baseline is the plain sliding window. The
note counts the questions at which a summary had to be written: with a model as summarizer,
each is a provider call that clearing alone avoids. Offline: the extractive summarizer,
o200k_base counts.
"""

from __future__ import annotations

import argparse
from statistics import mean

from bench.agent_traces import AgentTrace, agent_trace
from bench.report import Row
from strategies import compress
from strategies.base import ClearingPolicy, CompressionRequest
from strategies.text import words
from tokenwindow.counting import counter_for_encoding
from tokenwindow.messages import text_of
from tokenwindow.offline import prepare_offline_environment

BUDGETS = (0.25, 0.10)
STRATEGIES = ("sliding_window", "summarization", "hybrid")
BASELINE = "sliding_window"
SEEDS = range(16)


Outcome = tuple[bool, bool, bool]
"""(fact visible, restated by the assistant, a summary was written) for one question."""


def _visible(trace: AgentTrace, name: str, share: float, clearing: bool) -> list[Outcome]:
    """One outcome per reference of the trace."""
    counter = counter_for_encoding("o200k_base")
    policy = ClearingPolicy() if clearing else None
    found = []
    for ref in trace.references:
        history = trace.messages[: ref.index + 1]
        budget = int(counter.count_messages(history) * share)
        request = CompressionRequest(budget=budget, counter=counter, clearing=policy)
        result = compress(history, name, request)
        present = set(words("\n".join(text_of(m) for m in result.messages)))
        found.append((ref.fact.value in present, ref.fact.restated, bool(result.summarized)))
    return found


def _share(results: list[Outcome], restated: bool | None = None) -> float:
    chosen = [seen for seen, told, _ in results if restated is None or told == restated]
    return mean(chosen) if chosen else 0.0


def run(args: argparse.Namespace) -> list[Row]:
    """One row per strategy (alone and after clearing) and budget, beside the sliding window."""
    prepare_offline_environment()
    traces = [agent_trace(seed) for seed in (SEEDS[:3] if args.quick else SEEDS)]
    rows = []
    for share in BUDGETS:
        scores: dict[str, list[Outcome]] = {}
        for name in STRATEGIES:
            for clearing in (False, True):
                case = f"clearing+{name}" if clearing else name
                scores[case] = [r for t in traces for r in _visible(t, name, share, clearing)]
        baseline = _share(scores[BASELINE])
        for case, results in scores.items():
            ours = _share(results)
            rows.append(
                Row(
                    bench="agent_quality",
                    case=f"{case} @ {share:.0%}",
                    ours=f"{ours:.3f}",
                    baseline=f"{baseline:.3f}",
                    ratio=f"{ours / baseline:.2f}x" if baseline else "-",
                    note=(
                        f"facts visible; restated {_share(results, True):.2f}, tool-only "
                        f"{_share(results, False):.2f}; summaries "
                        f"{sum(r[2] for r in results)}/{len(results)}"
                    ),
                )
            )
    return rows
