"""Sessions: list, inspect, delete, and follow their events (with ``Last-Event-ID`` resume)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response

from gateway.auth import CallerDep, require_key
from gateway.errors import ApiError, json_errors, responses
from gateway.schemas import SessionSummary
from gateway.sse import (
    SESSION_EVENTS,
    EventStreamResponse,
    openapi_content,
    raw_events,
    relay,
    resume_point,
)
from gateway.state import GatewayDep
from gateway.tenants import Caller
from tokenwindow.constants import SESSION_ID_PATTERN, STREAM_ID_PATTERN, TURN_ID_PATTERN

router = APIRouter(prefix="/sessions", tags=["sessions"], dependencies=[Depends(require_key)])

SessionIdPath = Annotated[str, Path(pattern=SESSION_ID_PATTERN.pattern)]
MAX_OFFSET = 10**9
"""Past any real session count, and far inside the 64-bit range Redis accepts for a range."""


def _not_found(session_id: str) -> ApiError:
    return ApiError(404, f"no session {session_id!r}", code="session_not_found")


def _shown(caller: Caller, summary: dict[str, Any]) -> SessionSummary:
    return SessionSummary.model_validate(
        {**summary, "session_id": caller.external(summary["session_id"])}
    )


@router.get("", response_model=list[SessionSummary], responses=responses(400, 401))
async def list_sessions(
    gateway: GatewayDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[SessionSummary]:
    """The caller's sessions by most recent activity (an admin key sees every tenant's)."""
    found = await gateway.client.list_sessions(limit=limit, offset=offset, prefix=caller.prefix)
    return [_shown(caller, s) for s in found]


@router.get("/{session_id}", response_model=SessionSummary, responses=responses(400, 401, 404))
async def get_session(
    session_id: SessionIdPath, gateway: GatewayDep, caller: CallerDep
) -> SessionSummary:
    summary = await gateway.client.get_session(caller.internal(session_id))
    if summary is None:
        raise _not_found(session_id)
    return _shown(caller, summary)


@router.get(
    "/{session_id}/messages",
    response_model=list[dict[str, Any]],
    responses=responses(400, 401, 404),
)
async def get_transcript(
    session_id: SessionIdPath, gateway: GatewayDep, caller: CallerDep
) -> list[Any]:
    """The full raw transcript: every message sent and replied, never compressed."""
    stored = caller.internal(session_id)
    if await gateway.client.get_session(stored) is None:
        raise _not_found(session_id)
    return list(await gateway.client.get_transcript(stored))


@router.delete(
    "/{session_id}",
    status_code=204,
    response_class=Response,
    responses=responses(400, 401, 404),
)
async def delete_session(
    session_id: SessionIdPath, gateway: GatewayDep, caller: CallerDep
) -> Response:
    """Remove everything stored for the session."""
    if not await gateway.client.delete_session(caller.internal(session_id)):
        raise _not_found(session_id)
    return Response(status_code=204)


@router.get(
    "/{session_id}/events",
    response_class=EventStreamResponse,
    status_code=200,
    responses={
        200: openapi_content(SESSION_EVENTS, "The session's events as Server-Sent Events."),
        **json_errors(400, 401),
    },
)
async def events(
    *,
    session_id: SessionIdPath,
    gateway: GatewayDep,
    caller: CallerDep,
    turn_id: Annotated[str | None, Query(pattern=TURN_ID_PATTERN.pattern)] = None,
    last_event_id: Annotated[str | None, Query(pattern=STREAM_ID_PATTERN.pattern)] = None,
    last_event_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventStreamResponse:
    """Follow a session's events, each with ``id:`` = its stream entry id.

    Starts after ``Last-Event-ID`` (header, as a reconnecting EventSource sends it) or the
    ``last_event_id`` query parameter (``0`` replays everything kept); with neither, only new
    events. With ``turn_id``, only that turn's events, ending after its last one. A session
    the caller does not own has no events to show (it is a different, empty session).
    """
    start = resume_point(last_event_header, last_event_id)
    stream = gateway.client.subscribe(caller.internal(session_id), start, turn_id=turn_id)
    return EventStreamResponse(relay(stream, raw_events(caller)), gateway.keepalive)
