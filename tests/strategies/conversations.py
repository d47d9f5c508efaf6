"""Hypothesis generators for chat conversations and the invariants every result must satisfy."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from strategies.base import SUMMARY_NAME, CompressionResult
from strategies.layout import layout
from strategies.summary import summary_message
from strategies.truncate import cut_middle
from strategies.validity import check
from tokenwindow.counting import REPLY_PRIMING, TokenCounter
from tokenwindow.messages import Message, is_system

_WORDS = (
    "the meeting moved to Tuesday at 4 pm in Berlin and Alice will send invoice 1042 "
    "because the budget of 3,500 euros was approved by Bob on 12 March 2024 while Carol "
    "asked whether the API key rotation is still open and what the weather looks like"
)
WORDS = _WORDS.split()

text = st.lists(st.sampled_from(WORDS), min_size=1, max_size=80).map(" ".join)
names = st.sampled_from(["alice", "bob", "carol_2"])


@st.composite
def user_message(draw: st.DrawFn) -> Message:
    if draw(st.booleans()):
        content: object = draw(text)
    else:
        parts = draw(st.lists(text, min_size=1, max_size=3))
        content = [{"type": "text", "text": p} for p in parts]
    message: dict[str, object] = {"role": "user", "content": content}
    if draw(st.booleans()):
        message["name"] = draw(names)
    return message  # type: ignore[return-value]


@st.composite
def tool_exchange(draw: st.DrawFn, first_id: int) -> list[Message]:
    """An assistant turn with parallel tool calls, their results in any order, then a reply."""
    count = draw(st.integers(1, 3))
    calls = [
        {
            "id": f"call_{first_id + k}",
            "type": "function",
            "function": {"name": "lookup", "arguments": json.dumps({"q": draw(text)})},
        }
        for k in range(count)
    ]
    results: list[Message] = [
        {"role": "tool", "tool_call_id": call["id"], "content": draw(text)}
        for call in draw(st.permutations(calls))
    ]
    call_message: Message = {"role": "assistant", "content": None, "tool_calls": calls}  # type: ignore[typeddict-item]
    return [call_message, *results, {"role": "assistant", "content": draw(text)}]


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    """System prompts, maybe a running summary, then alternating user/assistant turns."""
    messages: list[Message] = [
        {"role": "system", "content": draw(text)} for _ in range(draw(st.integers(0, 2)))
    ]
    if draw(st.integers(0, 3)) == 0:
        messages.append(summary_message(draw(text)))
    turns = draw(st.integers(1, 10))
    for turn in range(turns):
        messages.append(draw(user_message()))
        if turn == turns - 1 and draw(st.booleans()):
            break
        if draw(st.booleans()):
            messages.extend(draw(tool_exchange(first_id=10 * turn)))
        else:
            messages.append({"role": "assistant", "content": draw(text)})
    return messages


def smallest_window(messages: list[Message], counter: TokenCounter) -> int:
    """What the failsafe cannot go below: system messages and the newest turn, cut to markers."""
    lay = layout(messages, counter)
    keep = [u.start for u in lay.units[: lay.mandatory] if u.system] + lay.head
    keep += [i for u in lay.units[lay.mandatory :] for i in range(u.start, u.end)]
    return REPLY_PRIMING + sum(
        counter.count_message(cut_middle(messages[i], 0, counter) or messages[i]) for i in keep
    )


def newest_user(messages: list[Message]) -> Message:
    return next(m for m in reversed(messages) if m["role"] == "user")


def assert_invariants(
    messages: list[Message],
    result: CompressionResult,
    *,
    budget: int,
    counter: TokenCounter,
    provider: str,
) -> None:
    """The contract of every strategy, checked on one input and its result."""
    out = result.messages
    assert result.tokens_after == counter.count_messages(out)
    assert result.tokens_before == counter.count_messages(messages)
    if result.tokens_before <= budget:
        assert out == messages
        return
    if result.error is not None:
        assert out == messages
        return
    assert result.tokens_after <= budget
    check(out, provider)
    assert sum(1 for m in out if m.get("name") == SUMMARY_NAME) <= 1
    systems = [m for m in messages if is_system(m) and m.get("name") != SUMMARY_NAME]
    kept_systems = [m for m in out if is_system(m) and m.get("name") != SUMMARY_NAME]
    if result.truncated:
        assert len(kept_systems) == len(systems)
        assert any(m["role"] == "user" for m in out)
        return
    assert kept_systems == systems
    assert newest_user(messages) in out
    suffix = messages[result.kept_from :]
    assert out[len(out) - len(suffix) :] == suffix
    covered = set(range(result.kept_from, len(messages)))
    # System messages are kept; so is a running summary a strategy carried over as is.
    covered |= {i for i, m in enumerate(messages) if is_system(m) and m in out}
    for start, end in result.summarized + result.dropped:
        assert covered.isdisjoint(range(start, end))
        covered |= set(range(start, end))
    assert covered == set(range(len(messages)))
    assert (result.summary is not None) == any(m.get("name") == SUMMARY_NAME for m in out)


TOOLS = ("get_weather", "search_docs", "read_file")
tool_output = st.lists(st.sampled_from(WORDS), min_size=1, max_size=400).map(" ".join)


@st.composite
def agent_conversations(draw: st.DrawFn) -> list[Message]:
    """An agent loop: user turns, each followed by rounds of (parallel) calls with long results.

    The last turn may stop right after tool results, as a request in the middle of a loop does.
    """
    messages: list[Message] = [
        {"role": "system", "content": draw(text)} for _ in range(draw(st.integers(0, 1)))
    ]
    call = 0
    turns = draw(st.integers(1, 4))
    for turn in range(turns):
        messages.append(draw(user_message()))
        for _ in range(draw(st.integers(0 if turn < turns - 1 else 1, 4))):
            calls = []
            for _ in range(draw(st.integers(1, 3))):
                call += 1
                name = draw(st.sampled_from(TOOLS))
                arguments = json.dumps({"q": draw(text)})
                calls.append(
                    {
                        "id": f"call_{call}",
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                )
            messages.append({"role": "assistant", "content": None, "tool_calls": calls})  # type: ignore[typeddict-item]
            messages.extend(
                {"role": "tool", "tool_call_id": c["id"], "content": draw(tool_output)}
                for c in draw(st.permutations(calls))
            )
        if turn < turns - 1 or draw(st.booleans()):
            messages.append({"role": "assistant", "content": draw(text)})
    return messages
