"""What the app holds for its lifetime, and the dependency routes use to reach it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from gateway.probes import QueueMonitor, WorkerPinger
from gateway.prometheus import RequestMetrics
from gateway.sse import Keepalive
from gateway.stateless import StatelessFitter
from gateway.tenants import KeyTable
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
    keys: KeyTable
    keepalive: Keepalive
    stateless: StatelessFitter
    background: set[asyncio.Task[None]] = field(default_factory=set)
    """Clean-ups that outlive their request (the strong references keep them running)."""

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        await self.queues.close()
        self.workers.close()
        await self.client.close()


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(_gateway)]
