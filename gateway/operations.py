"""Operational endpoints: ``GET /healthz``, ``GET /metrics`` and ``GET /metrics/shared``."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.exceptions
from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from gateway.auth import require_key
from gateway.errors import json_errors
from gateway.prometheus import CONTENT_TYPE, process_exposition, shared_exposition
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


PROMETHEUS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format."},
    **json_errors(401),
}


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(require_key)],
    responses=PROMETHEUS_RESPONSES,
)
async def metrics(gateway: GatewayDep) -> Response:
    """This gateway process's request counts and latencies: scrape every replica."""
    return Response(process_exposition(gateway.requests), media_type=CONTENT_TYPE)


@router.get(
    "/metrics/shared",
    response_class=Response,
    dependencies=[Depends(require_key)],
    responses=PROMETHEUS_RESPONSES,
)
async def shared_metrics(gateway: GatewayDep) -> Response:
    """Domain metrics of all workers and queue depths, alike on every replica: scrape one."""
    snapshot = await gateway.client.metrics()
    body = shared_exposition(snapshot, await gateway.queues.depths())
    return Response(body, media_type=CONTENT_TYPE)
