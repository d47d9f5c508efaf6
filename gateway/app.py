"""The FastAPI app: ``uvicorn gateway.app:app`` (the Procfile's ``web`` process).

Settings are read when the app starts, not at import; one ``TokenManagementClient`` serves
every request for the app's lifetime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import anthropic_compat, native, openai_compat, operations, sessions
from gateway.auth import key_table
from gateway.errors import install_error_handlers
from gateway.limits import BodySizeLimit
from gateway.probes import QueueMonitor, WorkerPinger
from gateway.prometheus import MeasureRequests, RequestMetrics
from gateway.shutdown import ShutdownSignal
from gateway.sse import Keepalive
from gateway.state import Gateway
from gateway.stateless import StatelessFitter
from tokenwindow import __version__
from tokenwindow.client import TokenManagementClient
from tokenwindow.logfmt import configure_logfmt
from tokenwindow.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """A gateway app; ``settings`` defaults to the environment's, read at start-up."""
    requests = RequestMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings or get_settings()
        configure_logfmt(config.log_level)
        keys = key_table(config)
        shutdown = ShutdownSignal()
        shutdown.install()
        client = TokenManagementClient(settings=config)
        gateway = Gateway(
            settings=config,
            client=client,
            queues=QueueMonitor(config, client.redis),
            workers=WorkerPinger(config),
            requests=requests,
            keys=keys,
            keepalive=Keepalive(config.sse_ping_seconds, shutdown.event),
            stateless=StatelessFitter(client.redis, config),
        )
        app.state.gateway = gateway
        try:
            yield
        finally:
            shutdown.uninstall()
            await gateway.close()

    app = FastAPI(
        title="tokenwindow gateway",
        summary="Chat turns that never overflow the context window, streamed over SSE.",
        version=__version__,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (native, openai_compat, anthropic_compat, sessions, operations):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(MeasureRequests, metrics=requests)
    return app


app = create_app()
