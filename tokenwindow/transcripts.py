"""Streaming readers for long transcripts: JSONL, ShareGPT and LoCoMo, one file, a folder or stdin.

Bulk jobs must survive one bad transcript, so every problem becomes a ``BadTranscript`` item
naming where and why, and reading goes on. JSONL is read line by line, so a file of any size
streams. The format is detected from the content, not trusted from the extension.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tokenwindow.errors import InvalidInputError
from tokenwindow.messages import Message, validate_messages

SUFFIXES = (".json", ".jsonl")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "model": "assistant",
    "system": "system",
}
SESSION = re.compile(r"^session_(\d+)$")


@dataclass(frozen=True)
class Transcript:
    """One conversation read from the input."""

    id: str
    messages: list[Message]


@dataclass(frozen=True)
class BadTranscript:
    """A transcript that could not be read; the batch goes on without it."""

    id: str
    """The transcript's id when known, else ``file:line`` or ``file[index]``."""
    reason: str


Item = Transcript | BadTranscript


def _checked(transcript_id: str, messages: object) -> Item:
    try:
        return Transcript(transcript_id, validate_messages(messages))
    except InvalidInputError as exc:
        return BadTranscript(transcript_id, exc.message)


def _sharegpt(transcript_id: str, turns: object) -> Item:
    if not isinstance(turns, list):
        return BadTranscript(transcript_id, "conversations: must be a list")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return BadTranscript(transcript_id, f"conversations[{i}]: must be an object")
        role = SHAREGPT_ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            return BadTranscript(
                transcript_id, f"conversations[{i}].from: unknown speaker {turn.get('from')!r}"
            )
        messages.append({"role": role, "content": turn.get("value")})
    return _checked(transcript_id, messages)


def _locomo_turn_text(turn: dict[str, Any]) -> str:
    text = str(turn.get("text", ""))
    caption = turn.get("blip_caption")
    return f"{text} [shares an image: {caption}]" if caption else text


def _locomo(transcript_id: str, conversation: dict[str, Any]) -> Item:
    """speaker_a is the user and speaker_b the assistant; each session opens with its date."""
    roles = {conversation.get("speaker_a"): "user", conversation.get("speaker_b"): "assistant"}
    sessions = sorted((int(m.group(1)), key) for key in conversation if (m := SESSION.match(key)))
    messages = []
    for _, key in sessions:
        turns = conversation[key]
        if not isinstance(turns, list):
            return BadTranscript(transcript_id, f"{key}: must be a list of turns")
        stamp = conversation.get(f"{key}_date_time")
        for k, turn in enumerate(turns):
            speaker = turn.get("speaker") if isinstance(turn, dict) else None
            if speaker not in roles:
                return BadTranscript(transcript_id, f"{key}[{k}].speaker: not speaker_a or _b")
            date = f"[{stamp}] " if stamp and k == 0 else ""
            content = f"{speaker}: {date}{_locomo_turn_text(turn)}"
            messages.append({"role": roles[speaker], "content": content})
    return _checked(transcript_id, messages)


def _document(value: object, default_id: str) -> Item:
    """One JSON object of any supported shape."""
    if not isinstance(value, dict):
        return BadTranscript(default_id, f"must be an object, got {type(value).__name__}")
    transcript_id = str(value.get("id") or value.get("sample_id") or default_id)
    if "messages" in value:
        return _checked(transcript_id, value["messages"])
    if "conversations" in value:
        return _sharegpt(transcript_id, value["conversations"])
    conversation = value.get("conversation", value)
    if isinstance(conversation, dict) and "speaker_a" in conversation:
        return _locomo(transcript_id, conversation)
    return BadTranscript(
        transcript_id, "not a known transcript: expected messages, conversations or speaker_a"
    )


LINE_FIELDS = frozenset(("messages", "conversations"))
"""A JSONL line holds ``{"id", "messages"}`` or a ShareGPT ``{"id", "conversations"}``."""


def _jsonl(lines: Iterable[str], source: str, first_number: int = 1) -> Iterator[Item]:
    for number, line in enumerate(lines, first_number):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield BadTranscript(where, f"invalid JSON: {exc.msg}")
            continue
        if isinstance(value, dict) and not LINE_FIELDS & value.keys():
            yield BadTranscript(str(value.get("id") or where), "messages: is missing")
            continue
        yield _document(value, where)


def read_stream(stream: TextIO, source: str) -> Iterator[Item]:
    """Transcripts from an open text stream: JSONL, or one JSON document of any format."""
    first = ""
    number = 0
    for first in stream:
        number += 1
        if first.strip():
            break
    try:
        head = json.loads(first)
    except json.JSONDecodeError:
        head = None
    if isinstance(head, dict) and LINE_FIELDS & head.keys():
        yield _document(head, f"{source}:{number}")
        yield from _jsonl(stream, source, number + 1)
        return
    try:
        document = json.loads(first + stream.read())
    except json.JSONDecodeError as exc:
        yield BadTranscript(source, f"neither JSONL of {{id, messages}} nor JSON: {exc.msg}")
        return
    if isinstance(document, list):
        for i, value in enumerate(document):
            yield _document(value, f"{source}[{i}]")
    else:
        yield _document(document, Path(source).stem)


def read_path(path: Path) -> Iterator[Item]:
    """Transcripts from one file, or from every ``.json``/``.jsonl`` file under a folder."""
    files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES) if path.is_dir() else [path]
    for file in files:
        try:
            with file.open(encoding="utf-8") as stream:
                yield from read_stream(stream, str(file))
        except (OSError, UnicodeDecodeError) as exc:
            yield BadTranscript(str(file), f"cannot read: {exc}")


def read_transcripts(source: str | Path) -> Iterator[Item]:
    """Transcripts from a file, a folder, or ``-`` for JSONL on stdin."""
    if str(source) == "-":
        return read_stream(sys.stdin, "<stdin>")
    return read_path(Path(source))
