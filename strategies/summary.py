"""The running summary message and the prompt an LLM summarizer is given.

The prompt is versioned so a stored summary can say which instructions produced it, and it
lives here (not in the worker) so the chunking that bounds the summarizer's input measures
exactly what the model will be sent.
"""

from __future__ import annotations

from strategies.base import SUMMARY_HEADER, SUMMARY_NAME
from tokenwindow.messages import Message, text_of

SUMMARY_PROMPT_VERSION = 1
SUMMARY_PROMPT = """\
You maintain the running summary of a long conversation so that it can continue after its \
older messages are removed. Write a new summary that replaces the previous summary (if any) \
and covers the new messages.

Keep, with the exact wording of names and values:
- who is who: people, roles, speakers' names;
- every number, quantity, price, identifier, date and time (resolve relative dates such as \
"yesterday" against the message dates when they are given);
- decisions made, commitments and their owners;
- facts stated about people, places, things and preferences;
- open questions, unresolved problems and pending tool results.
Keep chronological order. Drop greetings, small talk and repetition. Write terse factual \
lines, no commentary, no preamble. Use at most {max_tokens} tokens."""


def summary_message(text: str) -> Message:
    """The message that carries the running summary in the working window."""
    return {"role": "system", "name": SUMMARY_NAME, "content": f"{SUMMARY_HEADER}\n{text}"}


def parse_summary(message: Message) -> str | None:
    """The summary text if ``message`` is the running summary, else None."""
    if message.get("name") != SUMMARY_NAME or message["role"] != "system":
        return None
    return text_of(message).removeprefix(SUMMARY_HEADER).strip()


def render_transcript(messages: list[Message]) -> str:
    """Messages as ``speaker: text`` lines, the form a summarizer reads them in."""
    lines = []
    for message in messages:
        speaker: str = message["role"]
        if message.get("name"):
            speaker = f"{speaker} ({message['name']})"
        lines.append(f"{speaker}: {text_of(message)}")
    return "\n".join(lines)


def summary_prompt(
    messages: list[Message], *, previous_summary: str | None, max_tokens: int
) -> list[Message]:
    """The chat request an LLM summarizer sends for one span."""
    parts = []
    if previous_summary:
        parts.append(f"Previous summary:\n{previous_summary}")
    parts.append(f"New messages:\n{render_transcript(messages)}")
    return [
        {"role": "system", "content": SUMMARY_PROMPT.format(max_tokens=max_tokens)},
        {"role": "user", "content": "\n\n".join(parts)},
    ]
