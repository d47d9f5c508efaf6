"""One error tree for the whole service.

Every error carries a stable ``code`` that travels in events and task results, so a consumer in
any language can branch on it without parsing messages.
"""

from __future__ import annotations


class TokenWindowError(Exception):
    """Base class for every error this project raises on purpose."""

    code = "error"
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str | float]:
        return {"code": self.code, "message": self.message}


class ConfigurationError(TokenWindowError):
    """Raised when settings or the models file are invalid; start-up stops."""

    code = "configuration_error"


class UnreachableError(TokenWindowError):
    """Raised when Redis, the broker or a provider does not answer.

    The message names the URL (password hidden) and the setting that chooses it.
    """

    code = "unreachable"


class InvalidInputError(TokenWindowError, ValueError):
    """Raised when a caller sends something malformed: the message names the field."""

    code = "invalid_input"


class UnknownModelError(TokenWindowError, LookupError):
    """Raised when a model is not in the registry; the message names the closest known ones."""

    code = "unknown_model"

    def __init__(self, model: str, suggestions: list[str]) -> None:
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown model {model!r}{hint}")
        self.model = model
        self.suggestions = suggestions


class BudgetError(TokenWindowError, ValueError):
    """Raised when a token budget is impossible (non-positive, or below what must be kept)."""

    code = "invalid_budget"


class SummarizerError(TokenWindowError):
    """Raised when a summarizer fails; compression then returns its input unchanged."""

    code = "summarizer_failed"


class ProviderError(TokenWindowError):
    """Raised when a model provider fails; ``code`` says how, ``retryable`` whether to retry."""

    code = "provider_error"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, str | float]:
        """With the provider's ``retry_after`` (seconds) when it sent one: the gateway answers
        it as ``Retry-After``."""
        fields = super().to_dict()
        if self.retry_after is not None:
            fields["retry_after"] = self.retry_after
        return fields


class ProviderAuthError(ProviderError):
    """Raised when the provider rejects the credentials: fail fast, never retry."""

    code = "provider_auth"


class ProviderRateLimitError(ProviderError):
    """Raised when the provider answers 429; retried with backoff honouring Retry-After."""

    code = "rate_limited"
    retryable = True


class ProviderTimeoutError(ProviderError):
    """Raised when the provider does not answer in time."""

    code = "provider_timeout"
    retryable = True


class ProviderUnavailableError(ProviderError):
    """Raised on connection failures and 5xx answers."""

    code = "provider_unavailable"
    retryable = True


class ProviderBadRequestError(ProviderError):
    """Raised when the provider rejects the request as malformed (400 other than context)."""

    code = "provider_bad_request"


class ContextWindowExceededError(ProviderError):
    """Raised when the provider says the prompt is too long: compress harder, never resend."""

    code = "context_length_exceeded"


class InternalError(TokenWindowError):
    """Raised (as an event) when a turn hits a bug: it fails visibly and frees its session."""

    code = "internal_error"


class TurnFailedError(TokenWindowError):
    """Raised by the client when a turn ends in ``turn_failed``; ``code`` says why."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after
