"""Request and response bodies: what the OpenAPI schema publishes.

Messages are checked here for shape only; ``tokenwindow.messages`` stays the authority and its
errors (naming the field) reach the caller as 400 too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tokenwindow.constants import SESSION_ID_PATTERN
from tokenwindow.events import EventType
from tokenwindow.settings import StrategyName

SessionId = Annotated[
    str, Field(pattern=SESSION_ID_PATTERN.pattern, examples=["user_123_session_456"])
]


class ChatMessage(BaseModel):
    """One OpenAI chat message."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    function_call: dict[str, Any] | None = None
    refusal: str | None = None


def plain_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """Messages as the client takes them: only the fields the caller sent."""
    return [m.model_dump(exclude_unset=True) for m in messages]


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error shape, used by every endpoint and by error events in streams."""

    error: ErrorDetail


# --- the original API -------------------------------------------------------------------------
class ChatRequest(BaseModel):
    """A turn of a session: the new messages (or the whole history) and how to answer."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "session_id": "user_123_session_456",
                    "messages": [{"role": "user", "content": "Hi"}],
                },
                {
                    "session_id": "user_123_session_456",
                    "messages": [{"role": "user", "content": "Tell me more"}],
                    "stream": True,
                },
            ]
        },
    )

    session_id: SessionId
    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = Field(None, description="Defaults to the configured model.")
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0, le=1_000_000)
    strategy: StrategyName | None = None
    stream: bool = Field(False, description="Stream the session's events as Server-Sent Events.")


class StreamEvent(BaseModel):
    """A session event as relayed over SSE; the other fields depend on ``type`` (see README)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(json_schema_extra={"enum": [str(kind) for kind in EventType]})
    session_id: str
    turn_id: str
    seq: int
    id: str = Field(description="The Redis Stream entry id; resume after it with Last-Event-ID.")
    ts: float


class ChatResponse(BaseModel):
    session_id: str
    turn_id: str
    content: str
    model: str
    finish_reason: str | None = Field(None, description="The provider's, when it gave one.")
    usage: dict[str, int] | None = Field(None, description="The provider's token figures.")
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)


class CountRequest(BaseModel):
    """Exactly one of ``text`` or ``messages``."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    text: str | None = None
    messages: list[ChatMessage] | None = None
    tools: list[dict[str, Any]] | None = None


class CountResponse(BaseModel):
    model: str
    tokens: int
    exact: bool
    method: str
    encoding: str
    max_input_tokens: int
    max_output_tokens: int


class SessionSummary(BaseModel):
    session_id: str
    model: str | None
    strategy: str | None
    messages: int
    window_start: int
    window_tokens: int
    total_tokens: int
    compressions: int
    has_summary: bool
    created_at: float
    updated_at: float


class ModelInfo(BaseModel):
    name: str
    provider: str
    litellm_model: str
    max_input_tokens: int
    max_output_tokens: int
    encoding: str
    exact: bool
    api_base: str | None
    source: str


class Health(BaseModel):
    redis: bool
    workers: list[str]
    open: bool = Field(description="True when the gateway serves anyone (no API keys).")


# --- the OpenAI-compatible API ----------------------------------------------------------------
class StreamOptions(BaseModel):
    include_usage: bool = False


class OpenAIChatRequest(BaseModel):
    """OpenAI's chat completion request. Every field is passed on; any other is refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
                {
                    "model": "gpt-4o",
                    "messages": [{"role": "user", "content": "Hi"}],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
            ]
        },
    )

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0, le=1_000_000)
    max_completion_tokens: int | None = Field(None, gt=0, le=1_000_000)
    n: Literal[1] | None = Field(None, description="Only one choice is generated.")
    user: str | None = Field(None, max_length=256, description="End-user id, for the provider.")
    # Passed to the provider call as they are (see ``PASSED_PARAMS``).
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    reasoning_effort: str | None = None


PASSED_PARAMS = (
    "user",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "top_p",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "response_format",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
)
"""Request fields that reach the provider call as the turn's ``params``."""


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = Field(description="The provider's figures; null when it gave none.")


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]
