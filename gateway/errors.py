"""Errors as HTTP answers, with the status codes and shapes the official SDKs map.

Routes raise the project's own errors (or ``ApiError`` for purely HTTP ones); the handlers here
turn them into answers, so no route repeats the mapping. Answers are in OpenAI's shape
``{"error": {"message", "type", "code", "param"}}``, except under ``/v1/messages`` where they
are in Anthropic's ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from gateway.schemas import ErrorDetail, ErrorResponse
from tokenwindow.errors import InvalidInputError, TurnFailedError, UnknownModelError

INVALID_REQUEST = "invalid_request_error"
API_ERROR = "api_error"
ANTHROPIC_PREFIX = "/v1/messages"
"""Routes under this path answer errors in Anthropic's shape."""

ERROR_REF = {"$ref": f"#/components/schemas/{ErrorResponse.__name__}"}
"""The error schema in OpenAPI; the component is registered by the JSON routes' responses."""
TURN_FAILURE_STATUS = {
    "invalid_input": 400,
    "context_length_exceeded": 400,
    "provider_bad_request": 400,
    "unknown_model": 404,
    "rate_limited": 429,
    "provider_unavailable": 503,
    "provider_timeout": 504,
}
"""HTTP status of a failed turn by its error code; anything else is the provider's fault: 502."""
DEFAULT_RETRY_AFTER_SECONDS = 1
"""``Retry-After`` of a 429 when the provider named no delay."""
ANTHROPIC_TYPES = {
    400: INVALID_REQUEST,
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}
"""Anthropic's error type by status; any other status is ``api_error``."""


class ApiError(HTTPException):
    """Raised for failures that exist only over HTTP (auth, overload, size).

    An ``HTTPException`` so that FastAPI passes it through unchanged even when it is raised
    while the body is read.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, dict(headers or {}))
        self.error = ErrorDetail(message=message, type=type, code=code, param=param)

    def anthropic_body(self) -> dict[str, Any]:
        kind = ANTHROPIC_TYPES.get(self.status_code, API_ERROR)
        return {"type": "error", "error": {"type": kind, "message": self.error.message}}

    def openai_body(self) -> dict[str, Any]:
        return ErrorResponse(error=self.error).model_dump()


def turn_failure(exc: TurnFailedError) -> ApiError:
    status = TURN_FAILURE_STATUS.get(exc.code, 502)
    headers = {}
    if status == 429:
        delay = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER_SECONDS
        headers["Retry-After"] = str(max(1, math.ceil(delay)))
    kind = INVALID_REQUEST if status < 500 else API_ERROR
    return ApiError(status, exc.message, type=kind, code=exc.code, headers=headers)


def field_of(message: str) -> str | None:
    """Our validation messages start with the field: ``messages[0].role: ...``."""
    head, sep, _ = message.partition(": ")
    return head if sep and " " not in head else None


def invalid(message: str, param: str | None = None) -> ApiError:
    """A 400 naming the field (taken from the message when not given)."""
    return ApiError(400, message, code="invalid_input", param=param or field_of(message))


def error_response(error: ApiError, request: Request | None = None) -> JSONResponse:
    anthropic = request is not None and request.url.path.startswith(ANTHROPIC_PREFIX)
    body = error.anthropic_body() if anthropic else error.openai_body()
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


def validation_message(error: Mapping[str, Any]) -> tuple[str, str]:
    """``(field, "field: problem")`` of one pydantic error of a request."""
    loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "header", "path")]
    field = ".".join(loc) or "body"
    if error.get("type") == "extra_forbidden":
        return field, f"{field}: not supported by this endpoint (it would be ignored)"
    return field, f"{field}: {error.get('msg', 'invalid')}"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc, request)


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    field, message = validation_message(exc.errors()[0])
    return error_response(invalid(message, field), request)


async def _input_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInputError)
    return error_response(invalid(exc.message), request)


async def _unknown_model(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnknownModelError)
    error = ApiError(404, exc.message, code="model_not_found", param="model")
    return error_response(error, request)


async def _turn_failed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TurnFailedError)
    return error_response(turn_failure(exc), request)


async def _timed_out(request: Request, exc: Exception) -> JSONResponse:
    return error_response(ApiError(504, str(exc), type=API_ERROR, code="timeout"), request)


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    message = "the session store is unavailable"
    error = ApiError(503, message, type=API_ERROR, code="store_unavailable")
    return error_response(error, request)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    error = ApiError(exc.status_code, str(exc.detail), headers=exc.headers)
    return error_response(error, request)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(InvalidInputError, _input_invalid)
    app.add_exception_handler(UnknownModelError, _unknown_model)
    app.add_exception_handler(TurnFailedError, _turn_failed)
    app.add_exception_handler(TimeoutError, _timed_out)
    app.add_exception_handler(redis.exceptions.ConnectionError, _redis_down)
    app.add_exception_handler(HTTPException, _http_error)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a JSON route can answer."""
    return {status: {"model": ErrorResponse} for status in statuses}


def json_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The same for routes whose success is not JSON (FastAPI would give errors that type)."""
    return {
        status: {"description": "Error", "content": {"application/json": {"schema": ERROR_REF}}}
        for status in statuses
    }
