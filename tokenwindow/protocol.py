"""The task arguments other services send: validated here, on both sides of the queue.

A producer in any language sends ``tokenwindow.ingest_turn`` with these fields as JSON keyword
arguments. Validation errors name the field, so a bad turn fails clearly and alone.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tokenwindow.constants import SESSION_ID_PATTERN, TURN_ID_PATTERN
from tokenwindow.errors import InvalidInputError
from tokenwindow.messages import MAX_MESSAGE_CHARS, Message, text_of, validate_messages
from tokenwindow.settings import StrategyName

MAX_MESSAGES_PER_TURN = 10_000
"""More new messages than this in one turn is refused before any is validated or stored."""
MAX_TURN_CHARS = 4 * MAX_MESSAGE_CHARS
"""Total text of one turn's messages; beyond this no model window could hold it anyway."""


def check_session_id(session_id: object) -> str:
    """Session ids become key names; reject anything that could alias or glob."""
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
        raise InvalidInputError(
            f"session_id: must be 1-128 characters of letters, digits, '_', '-', '.', '@'; "
            f"got {session_id!r:.80}"
        )
    return session_id


def new_turn_id() -> str:
    return uuid.uuid4().hex


class TurnRequest(BaseModel):
    """One conversation turn: the new messages of a session, and how to answer them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_id: str
    turn_id: str = Field(default_factory=new_turn_id)
    messages: list[dict[str, Any]]
    model: str
    strategy: StrategyName | None = None
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    max_tokens: int | None = Field(None, gt=0, le=1_000_000)
    params: dict[str, Any] | None = None
    """Further chat parameters for the provider call (``tools``, ``tool_choice``, ...)."""
    submitted_at: float = Field(default_factory=time.time)

    @field_validator("session_id")
    @classmethod
    def _session_id(cls, value: str) -> str:
        return check_session_id(value)

    @field_validator("turn_id")
    @classmethod
    def _turn_id(cls, value: str) -> str:
        if not TURN_ID_PATTERN.fullmatch(value):
            raise ValueError("must be 1-128 characters of letters, digits, '_', '-', '.', '@'")
        return value

    @field_validator("messages", mode="before")
    @classmethod
    def _message_count(cls, value: object) -> object:
        """Checked before anything else so a million tiny messages costs one ``len``."""
        if isinstance(value, list | tuple) and len(value) > MAX_MESSAGES_PER_TURN:
            raise InvalidInputError(
                f"messages: {len(value):,} messages in one turn; "
                f"the limit is {MAX_MESSAGES_PER_TURN:,}"
            )
        return value

    @field_validator("messages")
    @classmethod
    def _messages(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        validate_messages(value)
        total = sum(len(text_of(m)) for m in cast(list[Message], value))
        if total > MAX_TURN_CHARS:
            raise InvalidInputError(
                f"messages: {total:,} characters in one turn; the limit is {MAX_TURN_CHARS:,}"
            )
        return value

    @property
    def typed_messages(self) -> list[Message]:
        return self.messages  # type: ignore[return-value]

    @classmethod
    def parse(cls, data: object) -> TurnRequest:
        """Validate task arguments; raise ``InvalidInputError`` naming the first bad field."""
        if not isinstance(data, dict):
            raise InvalidInputError(f"turn: must be an object, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidInputError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """First error of a pydantic report as ``field: problem`` (our own messages pass through)."""
    first = exc.errors()[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.get("loc", ()))
    where = where.lstrip(".") or "input"
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidInputError):
        return cause.message
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{where}: {message}"
