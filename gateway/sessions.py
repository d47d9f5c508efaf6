"""Sessions: list, inspect, delete, and follow their events (with ``Last-Event-ID`` resume)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Response

from gateway.auth import require_key
from gateway.errors import ApiError, json_errors, responses
from gateway.schemas import SessionSummary
from gateway.sse import (
    SESSION_EVENTS,
    STREAM_ID,
    EventStreamResponse,
    openapi_content,
    raw_event,
    relay,
    resume_point,
)
from gateway.state import GatewayDep
from tokenwindow.constants import SESSION_ID_PATTERN, TURN_ID_PATTERN

router = APIRouter(prefix="/sessions", tags=["sessions"], dependencies=[Depends(require_key)])

SessionIdPath = Annotated[str, Path(pattern=SESSION_ID_PATTERN.pattern)]


def _not_found(session_id: str) -> ApiError:
    return ApiError(404, f"no session {session_id!r}", code="session_not_found")


@router.get("", response_model=list[SessionSummary], responses=responses(401, 422))
async def list_sessions(
    gateway: GatewayDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[SessionSummary]:
    """Sessions by most recent activity."""
    found = await gateway.client.list_sessions(limit=limit, offset=offset)
    return [SessionSummary.model_validate(s) for s in found]


@router.get("/{session_id}", response_model=SessionSummary, responses=responses(401, 404, 422))
async def get_session(session_id: SessionIdPath, gateway: GatewayDep) -> SessionSummary:
    summary = await gateway.client.get_session(session_id)
    if summary is None:
        raise _not_found(session_id)
    return SessionSummary.model_validate(summary)


@router.get(
    "/{session_id}/messages",
    response_model=list[dict[str, Any]],
    responses=responses(401, 404, 422),
)
async def get_transcript(session_id: SessionIdPath, gateway: GatewayDep) -> list[Any]:
    """The full raw transcript: every message sent and replied, never compressed."""
    if await gateway.client.get_session(session_id) is None:
        raise _not_found(session_id)
    return list(await gateway.client.get_transcript(session_id))


@router.delete(
    "/{session_id}",
    status_code=204,
    response_class=Response,
    responses=responses(401, 404, 422),
)
async def delete_session(session_id: SessionIdPath, gateway: GatewayDep) -> Response:
    """Remove everything stored for the session."""
    if not await gateway.client.delete_session(session_id):
        raise _not_found(session_id)
    return Response(status_code=204)


@router.get(
    "/{session_id}/events",
    response_class=EventStreamResponse,
    responses={
        200: openapi_content(SESSION_EVENTS, "The session's events as Server-Sent Events."),
        **json_errors(401, 422),
    },
)
async def events(
    session_id: SessionIdPath,
    gateway: GatewayDep,
    turn_id: Annotated[str | None, Query(pattern=TURN_ID_PATTERN.pattern)] = None,
    last_event_id: Annotated[str | None, Query(pattern=STREAM_ID.pattern)] = None,
    last_event_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventStreamResponse:
    """Follow a session's events, each with ``id:`` = its stream entry id.

    Starts after ``Last-Event-ID`` (header, as a reconnecting EventSource sends it) or the
    ``last_event_id`` query parameter (``0`` replays everything kept); with neither, only new
    events. With ``turn_id``, only that turn's events, ending after its last one.
    """
    start = resume_point(last_event_header, last_event_id)
    stream = gateway.client.subscribe(session_id, start, turn_id=turn_id)
    return EventStreamResponse(relay(stream, raw_event))
