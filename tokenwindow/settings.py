"""The one place configuration comes from.

Every process (worker, CLI, gateway, client) builds its settings here and nowhere else reads
``os.environ``. The seed's variable names keep working unprefixed (``OPENAI_API_KEY``,
``DEFAULT_STRATEGY``, ``LOG_LEVEL``, ``REDIS_URL``, ``SENTRY_DSN``); our own knobs are prefixed
``TOKENWINDOW_``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tokenwindow.errors import ConfigurationError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_SCHEMES = ("redis", "rediss", "unix")
"""URL schemes of a plain Redis (kombu's and redis-py's)."""


class StrategyName(StrEnum):
    """Compression strategies a session or request may ask for."""

    HYBRID = "hybrid"
    SUMMARIZATION = "summarization"
    SLIDING_WINDOW = "sliding_window"


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Typed configuration, read once per process from the environment (and ``.env``)."""

    model_config = SettingsConfigDict(
        env_prefix="TOKENWINDOW_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
    )

    # --- connections -----------------------------------------------------------------------
    redis_url: str = Field(DEFAULT_REDIS_URL, validation_alias=_env("REDIS_URL"))
    client_max_connections: int = Field(1_000, gt=0)
    """Connections one client may open; every live ``subscribe`` holds one (blocking read)."""
    broker_url: str | None = Field(None, validation_alias=_env("BROKER_URL"))
    """Celery broker; defaults to the Redis of session state (``tokenwindow.topology``).
    ``amqp://`` selects RabbitMQ."""
    redis_url_explicit: bool = Field(False, exclude=True)
    """True when ``REDIS_URL`` came from the environment: then no embedded Redis is started."""
    redis_cluster: bool = False
    """Session state on a Redis Cluster; ``REDIS_URL`` names any node, ``BROKER_URL`` is then
    required (a cluster cannot hold Celery's broker lists or its result backend)."""
    sentinels: Annotated[list[tuple[str, int]], NoDecode] = Field(default_factory=list)
    """Sentinel addresses, ``host:port,host:port``: Redis is the master they name. ``REDIS_URL``
    still gives the database number and the master's password."""
    sentinel_master: str | None = None
    """The name the sentinels monitor the master under (``sentinel monitor NAME ...``)."""
    sentinel_password: SecretStr | None = None
    """Password of the sentinels themselves, when they require one."""
    result_backend: str | None = None
    """Celery's result backend; defaults to the Redis that holds session state (with a cluster:
    ``BROKER_URL`` when it is a Redis)."""
    broker_quorum_queues: bool = False
    """RabbitMQ only: declare the task queues as quorum queues and publish with confirms."""

    # --- providers -------------------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    anthropic_api_key: SecretStr | None = Field(None, validation_alias=_env("ANTHROPIC_API_KEY"))
    google_api_key: SecretStr | None = Field(
        None, validation_alias=_env("GOOGLE_API_KEY", "GEMINI_API_KEY")
    )
    models_file: Path | None = Field(None, validation_alias=_env("TOKENWINDOW_MODELS_FILE"))
    default_model: str | None = None
    """Model used when a request names none; ``None`` picks by available keys."""
    fallback_encoding: str | None = None
    """Tokenizer for models with no known one. Unset: an unknown model is an error."""

    # --- behaviour -------------------------------------------------------------------------
    default_strategy: StrategyName = Field(
        StrategyName.HYBRID, validation_alias=_env("DEFAULT_STRATEGY")
    )
    soft_threshold: float = Field(0.75, gt=0, le=1)
    hard_threshold: float = Field(0.95, gt=0, le=1)
    target_ratio: float = Field(0.5, gt=0, lt=1)
    """Compress down to this share of the usable input window."""
    summarizer_model: str | None = None
    """Model that writes summaries; unset means the extractive summarizer (no network)."""
    recent_share: float = Field(0.5, gt=0, lt=1)
    """Share of the compressed budget kept as verbatim recent messages (hybrid); it shrinks in
    proportion when the budget is under a quarter of the window."""
    tool_clearing: bool = True
    """Clear old tool results (placeholders) before any strategy drops or summarizes."""
    tool_keep_recent: int = Field(3, ge=0)
    """Newest tool results that clearing always leaves whole."""
    tool_clear_at_least: int = Field(0, ge=0)
    """Tokens clearing removes at least once it clears (fewer cache-breaking edits)."""
    exact_margin_tokens: int = Field(16, ge=0)
    estimate_margin_ratio: float = Field(0.10, ge=0, lt=0.5)
    """Extra headroom for models whose count is an estimate; see README, "Safety margins"."""
    estimate_margin_ratios: dict[str, Annotated[float, Field(ge=0, lt=0.5)]] = Field(
        default_factory=lambda: {"anthropic": 0.15}
    )
    """Per-provider overrides of ``estimate_margin_ratio``, as JSON: ``{"gemini": 0.12}``."""
    session_ttl_seconds: int = Field(7 * 24 * 3600, gt=0)
    stream_maxlen: int = Field(10_000, gt=0)
    """Approximate cap on events kept per session stream (replay window)."""
    stream_flush_ms: int = Field(20, ge=0, le=1_000)
    """Deltas of one reply that arrive within this many milliseconds go out as one ``token``
    event, and one Redis round trip carries every stream's events of that interval; 0 publishes
    every delta as its own event."""
    intake_nice: int = Field(10, ge=0, le=19)
    """How much lower (a nice increment) than its stream loop a threads-pool LLM worker runs
    its other threads: Celery's consumer taking turns in and the pool threads running each
    turn's steps. On a busy machine the replies in flight come first; 0 runs them alike."""

    # --- tasks -----------------------------------------------------------------------------
    completion_soft_time_limit: int = Field(240, gt=0)
    completion_time_limit: int = Field(300, gt=0)
    summarization_soft_time_limit: int = Field(120, gt=0)
    summarization_time_limit: int = Field(150, gt=0)
    visibility_margin_seconds: int = Field(60, ge=1)
    """How much longer than the longest hard time limit an unacked task stays invisible."""
    lease_seconds: int = Field(30, ge=3)
    """How long a turn's generation lease lasts unless its stream renews it (every third of
    it): another delivery of the turn may take it over this soon after its worker died."""
    provider_timeout_seconds: float = Field(60.0, gt=0)
    max_retries: int = Field(4, ge=0)

    # --- operations ------------------------------------------------------------------------
    log_level: LogLevel = Field("INFO", validation_alias=_env("LOG_LEVEL"))
    log_prompts: bool = False
    """Opt-in: include message text in logs and Sentry events."""
    sentry_dsn: SecretStr | None = Field(None, validation_alias=_env("SENTRY_DSN"))
    # Flower reads these from the Procfile's command line; the dev stack fills in what is unset
    # (a generated password, a data dir under .run/). There is no built-in password.
    flower_basic_auth: SecretStr | None = Field(None, validation_alias=_env("FLOWER_BASIC_AUTH"))
    flower_data_dir: Path | None = Field(None, validation_alias=_env("FLOWER_DATA_DIR"))
    """Where Flower keeps its task history (``flower.db``) across restarts."""
    flower_url_prefix: str = Field("", validation_alias=_env("FLOWER_URL_PREFIX"))
    """Path Flower is served under behind a reverse proxy, e.g. ``flower``."""
    flower_address: str = Field("127.0.0.1", validation_alias=_env("FLOWER_ADDRESS"))
    flower_port: int = Field(5555, ge=1, le=65535, validation_alias=_env("FLOWER_PORT"))
    tiktoken_cache_dir: Path | None = Field(None, validation_alias=_env("TIKTOKEN_CACHE_DIR"))
    litellm_local_model_cost_map: bool = Field(
        True, validation_alias=_env("LITELLM_LOCAL_MODEL_COST_MAP")
    )

    # --- HTTP gateway ----------------------------------------------------------------------
    gateway_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """Bearer tokens the gateway accepts, comma-separated, each ``tenant:key`` (a key without a
    ``tenant:`` prefix belongs to the tenant ``default``); a tenant sees only its own sessions."""
    gateway_admin_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    """Bearer tokens that see every session of every tenant, comma-separated."""
    gateway_allow_open: bool = False
    """With no keys configured the gateway refuses to start unless this is true."""
    sse_ping_seconds: float = Field(15.0, gt=0)
    """Idle time after which an event stream sends a ``: ping`` comment (proxies close silent
    connections; a compression can run for minutes with nothing to send)."""
    stateless_summary_ttl_seconds: int = Field(24 * 3600, gt=0)
    """How long a summary made for a stateless request stays reusable by the next request that
    starts with the same messages."""
    max_queue_depth: int = Field(1_000, gt=0)
    """Waiting tasks on the completions or fast queue above which new turns get a 503."""
    max_request_bytes: int = Field(8 * 1024 * 1024, gt=0)
    """Largest request body the gateway accepts (whole histories are resent by OpenAI clients)."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        """``LOG_LEVEL=debug`` is as common as ``DEBUG``; accept both."""
        return value.upper() if isinstance(value, str) else value

    @field_validator("gateway_api_keys", "gateway_admin_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        """One environment variable holds them all: ``TOKENWINDOW_GATEWAY_API_KEYS=k1,k2``."""
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("sentinels", mode="before")
    @classmethod
    def _split_sentinels(cls, value: object) -> object:
        """``TOKENWINDOW_SENTINELS=10.0.0.1:26379,10.0.0.2:26379``: every entry needs a port."""
        if not isinstance(value, str):
            return value
        addresses = []
        for item in (part.strip() for part in value.split(",")):
            host, _, port = item.rpartition(":")
            if not item:
                continue
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port entries separated by commas, got {item!r}")
            addresses.append((host.strip("[]"), int(port)))
        return addresses

    @model_validator(mode="after")
    def _topology_complete(self) -> Settings:
        if bool(self.sentinels) != bool(self.sentinel_master):
            raise ValueError(
                "TOKENWINDOW_SENTINELS and TOKENWINDOW_SENTINEL_MASTER must be set together"
            )
        if urlsplit(self.broker_url or "").scheme == "sentinel" and not self.sentinel_master:
            raise ValueError(
                "BROKER_URL=sentinel://... needs TOKENWINDOW_SENTINELS and "
                "TOKENWINDOW_SENTINEL_MASTER (the master's name)"
            )
        if self.sentinels and self.redis_cluster:
            raise ValueError(
                "TOKENWINDOW_REDIS_CLUSTER and TOKENWINDOW_SENTINELS exclude each other"
            )
        if self.redis_cluster and not self.broker_url:
            raise ValueError(
                "BROKER_URL is required with TOKENWINDOW_REDIS_CLUSTER=true "
                "(RabbitMQ or a plain Redis: a cluster cannot be the broker)"
            )
        if (
            self.redis_cluster
            and not self.result_backend
            and urlsplit(self.broker_url or "").scheme not in REDIS_SCHEMES
        ):
            raise ValueError(
                "TOKENWINDOW_RESULT_BACKEND is required with TOKENWINDOW_REDIS_CLUSTER=true "
                "and a broker that is not Redis (a cluster cannot be the result backend)"
            )
        if self.broker_quorum_queues and urlsplit(self.broker_url or "").scheme not in (
            "amqp",
            "amqps",
            "pyamqp",
        ):
            raise ValueError(
                "TOKENWINDOW_BROKER_QUORUM_QUEUES=true needs BROKER_URL=amqp://... (RabbitMQ)"
            )
        return self

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Settings:
        # Messages name the environment variables: that is what an operator has to change.
        if not self.target_ratio < self.soft_threshold <= self.hard_threshold:
            raise ValueError(
                "TOKENWINDOW_TARGET_RATIO < TOKENWINDOW_SOFT_THRESHOLD <= "
                "TOKENWINDOW_HARD_THRESHOLD must hold, got "
                f"{self.target_ratio} < {self.soft_threshold} <= {self.hard_threshold}"
            )
        if self.completion_soft_time_limit >= self.completion_time_limit:
            raise ValueError(
                "TOKENWINDOW_COMPLETION_SOFT_TIME_LIMIT must be below "
                "TOKENWINDOW_COMPLETION_TIME_LIMIT"
            )
        if self.summarization_soft_time_limit >= self.summarization_time_limit:
            raise ValueError(
                "TOKENWINDOW_SUMMARIZATION_SOFT_TIME_LIMIT must be below "
                "TOKENWINDOW_SUMMARIZATION_TIME_LIMIT"
            )
        return self

    @property
    def longest_task_seconds(self) -> int:
        return max(self.completion_time_limit, self.summarization_time_limit)


def _env_name(settings_cls: type[Settings], field: str) -> str:
    info = settings_cls.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    if isinstance(alias, str):
        return alias
    return f"TOKENWINDOW_{field.upper()}"


def _one_line(error: ValidationError) -> str:
    """Turn pydantic's report into one line that names the variable and what is allowed."""
    # Errors are located by field name or, for aliased fields, by the variable's name.
    names = {field: _env_name(Settings, field) for field in Settings.model_fields}
    names.update({name: name for name in names.values()})
    parts = []
    for item in error.errors():
        loc = [str(p) for p in item.get("loc", ())]
        name = next((names[p] for p in loc if p in names), None)
        message = item.get("msg", "invalid value").removeprefix("Value error, ")
        ctx = item.get("ctx") or {}
        if "expected" in ctx:
            message = f"expected {ctx['expected']}"
        parts.append(f"{name}: {message}" if name else message)
    return "invalid configuration: " + "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, raising a one-line ``ConfigurationError``."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigurationError(_one_line(exc)) from None
    settings.redis_url_explicit = "redis_url" in settings.model_fields_set
    return settings


@functools.cache
def get_settings() -> Settings:
    """Process-wide settings, built on first use (never at import time)."""
    return load_settings()


def environment() -> Mapping[str, str]:
    """The process environment, for a models file's ``os.environ/VAR`` references.

    LiteLLM's proxy format lets the file name any variable, so those cannot be settings fields;
    this is the one other place the environment is read.
    """
    return os.environ
