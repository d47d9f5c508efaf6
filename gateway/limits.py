"""Request size limit, enforced while the body is read (a declared length is checked first)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ApiError, error_response


class BodySizeLimit:
    """ASGI middleware answering 413 to bodies over ``max_request_bytes`` (read per request
    from the app's settings, which exist only once the lifespan has started)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: int = scope["app"].state.gateway.settings.max_request_bytes
        too_large = ApiError(
            413, f"request body is larger than {limit} bytes", code="request_too_large"
        )
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            response = error_response(too_large, Request(scope))
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large
            return message

        await self.app(scope, limited, send)
