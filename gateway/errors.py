"""Errors as HTTP answers, all in OpenAI's shape ``{"error": {"message", "type", "code"}}``.

Routes raise the project's own errors (or ``ApiError`` for purely HTTP ones); the handlers here
turn them into status codes, so no route repeats the mapping.
"""

from __future__ import annotations

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

ERROR_REF = {"$ref": f"#/components/schemas/{ErrorResponse.__name__}"}
"""The error schema in OpenAPI; the component is registered by the JSON routes' responses."""
TURN_FAILURE_STATUS = {"invalid_input": 422, "unknown_model": 404, "rate_limited": 429}
"""HTTP status of a failed turn by its error code; anything else is the provider's fault: 502."""


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


def error_body(
    message: str, *, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The JSON of an error, as answered and as sent in a stream's error event."""
    detail = ErrorDetail(message=message, type=type, code=code, param=param)
    return ErrorResponse(error=detail).model_dump()


def turn_failure(exc: TurnFailedError) -> ApiError:
    status = TURN_FAILURE_STATUS.get(exc.code, 502)
    kind = INVALID_REQUEST if status < 500 else "api_error"
    return ApiError(status, exc.message, type=kind, code=exc.code)


def _field_of(message: str) -> str | None:
    """Our validation messages start with the field: ``messages[0].role: ...``."""
    head, sep, _ = message.partition(": ")
    return head if sep and " " not in head else None


def error_response(error: ApiError) -> JSONResponse:
    body = ErrorResponse(error=error.error).model_dump()
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _request_invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "header", "path")]
    field = ".".join(loc) or "body"
    message = f"{field}: {first.get('msg', 'invalid')}"
    return error_response(ApiError(422, message, code="invalid_input", param=field))


async def _input_invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInputError)
    return error_response(ApiError(422, exc.message, code=exc.code, param=_field_of(exc.message)))


async def _unknown_model(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnknownModelError)
    return error_response(ApiError(404, exc.message, code="model_not_found", param="model"))


async def _turn_failed(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TurnFailedError)
    return error_response(turn_failure(exc))


async def _timed_out(_: Request, exc: Exception) -> JSONResponse:
    return error_response(ApiError(504, str(exc), type="api_error", code="timeout"))


async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
    message = "the session store is unavailable"
    return error_response(ApiError(503, message, type="api_error", code="store_unavailable"))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return error_response(ApiError(exc.status_code, str(exc.detail), headers=exc.headers))


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
