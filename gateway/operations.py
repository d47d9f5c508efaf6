"""Operational endpoints: ``GET /healthz`` and ``GET /metrics``."""

from __future__ import annotations

import asyncio

import redis.exceptions
from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from gateway.auth import require_key
from gateway.errors import json_errors
from gateway.prometheus import CONTENT_TYPE, exposition
from gateway.schemas import Health
from gateway.state import GatewayDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(gateway: GatewayDep) -> JSONResponse:
    """200 when Redis and at least one worker answer; 503 with the same body otherwise.

    ``open`` is true when the gateway runs without API keys (``TOKENWINDOW_GATEWAY_ALLOW_OPEN``).
    """
    try:
        store = bool(await gateway.client.redis.ping())
    except (OSError, redis.exceptions.RedisError):
        store = False
    workers = await asyncio.to_thread(gateway.workers.ping) if store else []
    body = Health(redis=store, workers=workers, open=gateway.keys.open)
    return JSONResponse(body.model_dump(), status_code=200 if store and workers else 503)


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(require_key)],
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format."},
        **json_errors(401),
    },
)
async def metrics(gateway: GatewayDep) -> Response:
    """Domain metrics of all workers plus this gateway's request counts and latencies."""
    snapshot = await gateway.client.metrics()
    body = exposition(snapshot, await gateway.queues.depths(), gateway.requests)
    return Response(body, media_type=CONTENT_TYPE)
