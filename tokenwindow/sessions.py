"""Session data as stored in Redis, readable by workers and by the client alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tokenwindow.counting import REPLY_PRIMING
from tokenwindow.messages import Message


def text_of_reply(value: bytes | str | None, default: str = "") -> str:
    """A Redis reply as text (clients may or may not decode responses)."""
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else value


def decode_hash(raw: dict[Any, Any]) -> dict[str, str]:
    return {text_of_reply(k): text_of_reply(v) for k, v in raw.items()}


@dataclass(frozen=True)
class Entry:
    """One transcript entry: the message, its token count and which turn brought it."""

    message: Message
    tokens: int
    turn_id: str

    def dumps(self) -> str:
        return json.dumps(
            {"turn_id": self.turn_id, "tokens": self.tokens, "message": self.message},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, raw: str | bytes) -> Entry:
        data = json.loads(raw)
        return cls(message=data["message"], tokens=int(data["tokens"]), turn_id=data["turn_id"])


def session_summary(session_id: str, meta: dict[str, str]) -> dict[str, Any]:
    """The JSON shape ``get_session`` returns; shared by the workers and the client."""

    def num(name: str) -> int:
        return int(float(meta.get(name, "0") or 0))

    return {
        "session_id": session_id,
        "model": meta.get("model"),
        "strategy": meta.get("strategy"),
        "messages": num("messages"),
        "window_start": num("window_start"),
        "window_tokens": num("window_tokens") + REPLY_PRIMING if meta else 0,
        "total_tokens": num("total_tokens"),
        "compressions": num("compressions"),
        "has_summary": bool(meta.get("summary")),
        "created_at": float(meta.get("created_at", "0") or 0),
        "updated_at": float(meta.get("updated_at", "0") or 0),
    }
