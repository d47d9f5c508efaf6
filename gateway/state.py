"""What the app holds for its lifetime, and the dependency routes use to reach it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from gateway.probes import QueueMonitor, WorkerPinger
from gateway.prometheus import RequestMetrics
from tokenwindow.client import TokenManagementClient
from tokenwindow.settings import Settings


@dataclass
class Gateway:
    """One per app lifespan: the shared client and the gateway's own probes."""

    settings: Settings
    client: TokenManagementClient
    queues: QueueMonitor
    workers: WorkerPinger
    requests: RequestMetrics

    async def close(self) -> None:
        await self.queues.close()
        self.workers.close()
        await self.client.close()


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(_gateway)]
